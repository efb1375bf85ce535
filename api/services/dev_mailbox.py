"""The development mailbox: account mail as files, for a machine with no SMTP relay.

In local mode (``mail_delivery`` "auto" or "mailbox", refused in production) the
outbox delivers each mail as one RFC 5322 file, ``<data_dir>/mailbox/<UTC time>-<n>.eml``
(mode 0600: the mails carry single-use tokens). ``learnstream mail list`` and
``learnstream mail show`` (infra/cli.py) read them; any mail client opens them too.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from api.services.email import OutgoingEmail
from learnstream.settings import Settings

_SEQUENCE = itertools.count(1)


def mailbox_dir(settings: Settings) -> Path:
    """The folder the development mailbox writes to."""
    return settings.data_dir / "mailbox"


@dataclass(frozen=True, slots=True)
class StoredMail:
    """One mail of the development mailbox; ``name`` is its file name (the id to show)."""

    name: str
    to: str
    subject: str
    date: str
    body: str


class MailboxFolder:
    """An ``EmailSender`` that writes each mail into :func:`mailbox_dir`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, email: OutgoingEmail) -> None:
        """Write ``email`` as a new ``.eml`` file (OSError if the folder is not writable)."""
        await asyncio.to_thread(self._write, email)

    def _write(self, mail: OutgoingEmail) -> None:
        folder = mailbox_dir(self._settings)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        message = EmailMessage()
        message["From"] = self._settings.mail_from
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = email.utils.format_datetime(datetime.now(UTC))
        message.set_content(mail.body)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = folder / f"{stamp}-{os.getpid()}-{next(_SEQUENCE)}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(message.as_bytes())


def list_mail(settings: Settings) -> list[StoredMail]:
    """Every mail of the development mailbox, oldest first."""
    folder = mailbox_dir(settings)
    if not folder.is_dir():
        return []
    return [read_mail(settings, path.name) for path in sorted(folder.glob("*.eml"))]


def read_mail(settings: Settings, name: str) -> StoredMail:
    """The mail stored as ``name`` (a file name from :func:`list_mail`); FileNotFoundError."""
    path = mailbox_dir(settings) / Path(name).name  # a bare name: never outside the folder
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    body = parsed.get_body(preferencelist=("plain",))
    return StoredMail(
        name=path.name,
        to=str(parsed["To"]),
        subject=str(parsed["Subject"]),
        date=str(parsed["Date"]),
        body=body.get_content() if body is not None else "",
    )
