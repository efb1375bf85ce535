"""Outgoing account email through a pluggable sender.

``EmailSender`` is the contract; ``SmtpEmailSender`` is the implementation the
app uses (any SMTP relay; tests run a local aiosmtpd receiver). The message
builders here decide what each mail says, so the wording is tested once.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlencode

from learnstream.exceptions import ServiceUnavailableError
from learnstream.settings import Settings


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One plain-text email to one recipient."""

    to: str
    subject: str
    body: str


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


def _link(settings: Settings, path: str, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}{path}?{urlencode({'token': token})}"


def verification_email(to: str, token: str, settings: Settings) -> OutgoingEmail:
    """Asks the user to confirm their address; the token is single-use."""
    hours = settings.email_verification_ttl_s // 3600
    return OutgoingEmail(
        to=to,
        subject="Confirm your Learnstream email address",
        body=(
            "Welcome to Learnstream.\n\n"
            f"Confirm your address: {_link(settings, '/verify-email', token)}\n"
            f"or send this token to POST /v1/auth/verify-email:\n\n    {token}\n\n"
            f"It works once, within {hours} hours.\n"
        ),
    )


def already_registered_email(to: str, settings: Settings) -> OutgoingEmail:
    """Sent instead of a second account, so registration never reveals who has one."""
    return OutgoingEmail(
        to=to,
        subject="You already have a Learnstream account",
        body=(
            "Someone (probably you) tried to register with this address, which already "
            "has an account. If you forgot the password, reset it with "
            "POST /v1/auth/password-reset/request.\n"
        ),
    )


def password_reset_email(to: str, token: str, settings: Settings) -> OutgoingEmail:
    """Carries a single-use reset token."""
    minutes = settings.password_reset_ttl_s // 60
    return OutgoingEmail(
        to=to,
        subject="Reset your Learnstream password",
        body=(
            f"Reset your password: {_link(settings, '/reset-password', token)}\n"
            f"or send this token with a new password to POST /v1/auth/password-reset/confirm:"
            f"\n\n    {token}\n\n"
            f"It works once, within {minutes} minutes. If you did not ask, ignore this mail.\n"
        ),
    )


def unlock_email(to: str, token: str, settings: Settings) -> OutgoingEmail:
    """Tells the user their account locked and how to unlock it."""
    minutes = settings.login_lockout_s // 60
    return OutgoingEmail(
        to=to,
        subject="Your Learnstream account was locked",
        body=(
            f"After {settings.login_max_failures} failed sign-ins your account is locked "
            f"for {minutes} minutes.\n"
            f"Unlock it now: {_link(settings, '/unlock', token)}\n"
            f"or send this token to POST /v1/auth/unlock:\n\n    {token}\n\n"
            "Resetting your password also unlocks it. If these sign-ins were not yours, "
            "reset your password.\n"
        ),
    )
