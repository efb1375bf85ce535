"""Outgoing account email: what each mail says, the caps, and the way into the outbox.

``EmailSender`` is the contract of a transport: ``SmtpEmailSender`` (any SMTP relay;
tests run a local aiosmtpd receiver) or the development mailbox
(api/services/dev_mailbox.py). The app's sender is a ``LimitedMailer``: it caps mail
per recipient address and per account (every kind of account mail together) and
writes what passes into the outbox (api/services/outbox.py), from which a sender task
delivers through the transport with retries. Services call :func:`queue` inside the
transaction that changes the account and :func:`dispatch` after it commits. The
message builders here decide what each mail says, so the wording is tested once.

Links in mails carry their token in the URL fragment (``/dashboard#action=unlock&
token=lst_...``): browsers never send the fragment, so the token reaches no server
access log, proxy log or Referer header; the dashboard page reads it and POSTs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import smtplib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode

from redis.asyncio import Redis

from api.services import rate_limits
from learnstream.db import Queryable
from learnstream.exceptions import ServiceUnavailableError
from learnstream.settings import Settings

if TYPE_CHECKING:
    from api.services.outbox import Outbox

log = logging.getLogger(__name__)

MAIL_WINDOW_S = 3600


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One plain-text email to one recipient; ``account_id`` is the account it is about."""

    to: str
    subject: str
    body: str
    account_id: str | None = None


class EmailSender(Protocol):
    """Delivers account email; raises ServiceUnavailableError when it cannot."""

    async def send(self, email: OutgoingEmail) -> None:
        """Hand ``email`` to the mail system."""
        ...


class SmtpEmailSender:
    """Sends through the SMTP relay in settings (smtplib in a worker thread)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, email: OutgoingEmail) -> None:
        """Deliver ``email``; ServiceUnavailableError if the relay refuses or is down."""
        await asyncio.to_thread(self._send_blocking, email)

    def _send_blocking(self, email: OutgoingEmail) -> None:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.mail_from
        message["To"] = email.to
        message["Subject"] = email.subject
        message.set_content(email.body)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=10) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username and s.smtp_password:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise ServiceUnavailableError(
                f"SMTP relay {s.smtp_host}:{s.smtp_port} did not take the mail: {exc}"
            ) from exc


class LimitedMailer:
    """The app's ``EmailSender``: caps account mail and writes it into the outbox.

    At most ``mail_per_address_per_hour`` mails to one address (across tenants) and
    ``mail_per_account_per_hour`` about one account, all kinds together, per fixed
    hour window in Redis; the rest are dropped with a log line, never an error, so
    the caller's answer stays the same. With ``mail_off_request_path``, jobs handed to
    :meth:`later` run in a task of their own; ``aclose`` waits for those at shutdown.
    """

    def __init__(self, outbox: Outbox, redis: Redis, settings: Settings) -> None:
        self.outbox = outbox
        self._redis = redis
        self._settings = settings
        self._pending: set[asyncio.Task[None]] = set()

    async def send(self, email: OutgoingEmail) -> None:
        """Queue ``email`` in a transaction of its own and dispatch it, unless capped."""
        if not await self.within_limits(email):
            return
        await self.outbox.enqueue(self.outbox.pool, email)
        await self.outbox.dispatch()

    async def queue(self, conn: Queryable, email: OutgoingEmail) -> None:
        """Queue ``email`` in ``conn``'s transaction unless capped; dispatch after commit."""
        if await self.within_limits(email):
            await self.outbox.enqueue(conn, email)

    async def within_limits(self, email: OutgoingEmail) -> bool:
        """Count ``email`` against its address and account caps; False if one is used up."""
        s = self._settings
        now_s = time.time()
        address_fp = hashlib.sha256(email.to.strip().lower().encode()).hexdigest()[:32]
        buckets = [(f"mail:to:{address_fp}", s.mail_per_address_per_hour)]
        if email.account_id is not None:
            buckets.append((f"mail:account:{email.account_id}", s.mail_per_account_per_hour))
        allowed = True
        for bucket, limit in buckets:
            decision = await rate_limits.hit(
                self._redis,
                namespace=s.redis_namespace,
                bucket=bucket,
                limit=limit,
                now_s=now_s,
                window_s=MAIL_WINDOW_S,
            )
            allowed = allowed and decision.allowed
        if not allowed:
            log.warning(
                "account mail dropped: per-address or per-account hourly cap reached",
                extra={"subject": email.subject, "account_id": email.account_id},
            )
        return allowed

    async def later(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` off the request path (or now, with ``mail_off_request_path`` off)."""
        if not self._settings.mail_off_request_path:
            await job()
            return
        task = asyncio.create_task(self._run(job))
        # Keep a reference: the loop holds tasks only weakly.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        """Wait for the jobs still running, then stop the outbox's sender (app shutdown)."""
        while pending := [task for task in self._pending if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.outbox.aclose()

    @staticmethod
    async def _run(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception:
            # Off the request path nobody can answer 503; the log is where it shows.
            log.exception("account mail job failed")


async def queue(sender: EmailSender, conn: Queryable, email: OutgoingEmail) -> None:
    """Queue ``email`` in ``conn``'s transaction (the outbox); call :func:`dispatch` after
    the commit. A bare transport (scripts, unit tests) is not transactional: it sends now."""
    if isinstance(sender, LimitedMailer):
        await sender.queue(conn, email)
    else:
        await sender.send(email)


async def dispatch(sender: EmailSender) -> None:
    """After the commit of a transaction that queued mail: let the outbox deliver it."""
    if isinstance(sender, LimitedMailer):
        await sender.outbox.dispatch()


async def off_request_path(sender: EmailSender, job: Callable[[], Awaitable[None]]) -> None:
    """Run ``job`` (token issue and mail) off the request path if ``sender`` can, else now.

    Used where an account exists for some requests and not others: the request
    itself then does the same work either way.
    """
    if isinstance(sender, LimitedMailer):
        await sender.later(job)
    else:
        await job()


def link(settings: Settings, action: str, token: str) -> str:
    """The dashboard URL that spends ``token`` for ``action``, the token in the fragment."""
    # The fragment is never sent by browsers, so the token stays out of access logs.
    fragment = urlencode({"action": action, "token": token})
    return f"{settings.public_base_url.rstrip('/')}/dashboard#{fragment}"


def verification_email(
    to: str, token: str, settings: Settings, *, account_id: str | None = None
) -> OutgoingEmail:
    """Asks the user to confirm their address; the token is single-use."""
    hours = settings.email_verification_ttl_s // 3600
    return OutgoingEmail(
        to=to,
        account_id=account_id,
        subject="Confirm your Learnstream email address",
        body=(
            "Welcome to Learnstream.\n\n"
            f"Confirm your address: {link(settings, 'verify-email', token)}\n"
            f"or send this token to POST /v1/auth/verify-email:\n\n    {token}\n\n"
            f"It works once, within {hours} hours.\n"
        ),
    )


def already_registered_email(
    to: str, settings: Settings, *, account_id: str | None = None
) -> OutgoingEmail:
    """Sent instead of a second account, so registration never reveals who has one."""
    return OutgoingEmail(
        to=to,
        account_id=account_id,
        subject="You already have a Learnstream account",
        body=(
            "Someone (probably you) tried to register with this address, which already "
            "has an account. If you forgot the password, reset it with "
            "POST /v1/auth/password-reset/request.\n"
        ),
    )


def password_reset_email(
    to: str, token: str, settings: Settings, *, account_id: str | None = None
) -> OutgoingEmail:
    """Carries a single-use reset token."""
    minutes = settings.password_reset_ttl_s // 60
    return OutgoingEmail(
        to=to,
        account_id=account_id,
        subject="Reset your Learnstream password",
        body=(
            f"Reset your password: {link(settings, 'reset-password', token)}\n"
            f"or send this token with a new password to POST /v1/auth/password-reset/confirm:"
            f"\n\n    {token}\n\n"
            f"It works once, within {minutes} minutes. If you did not ask, ignore this mail.\n"
        ),
    )


def unlock_email(
    to: str, token: str, settings: Settings, *, account_id: str | None = None
) -> OutgoingEmail:
    """Tells the user their account locked and how to unlock it."""
    minutes = settings.login_lockout_s // 60
    return OutgoingEmail(
        to=to,
        account_id=account_id,
        subject="Your Learnstream account was locked",
        body=(
            f"After {settings.login_max_failures} failed sign-ins your account is locked "
            f"for {minutes} minutes.\n"
            f"Unlock it now: {link(settings, 'unlock', token)}\n"
            f"or send this token to POST /v1/auth/unlock:\n\n    {token}\n\n"
            "Resetting your password also unlocks it. If these sign-ins were not yours, "
            "reset your password.\n"
        ),
    )
