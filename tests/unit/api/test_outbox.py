"""Outbox pieces without a database: the retry schedule, the transport choice, the QR code."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pydantic import ValidationError

from api.services import mfa
from api.services.dev_mailbox import MailboxFolder
from api.services.email import SmtpEmailSender
from api.services.outbox import retry_delay_s, transport_for
from learnstream.settings import Settings


def test_retry_delay_doubles_up_to_the_cap() -> None:
    delays = [retry_delay_s(n, base_s=30, max_s=3600) for n in range(1, 10)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_local_mode_delivers_to_the_mailbox_and_other_modes_to_smtp() -> None:
    assert isinstance(transport_for(Settings(environment="local")), MailboxFolder)
    assert isinstance(transport_for(Settings(environment="test")), SmtpEmailSender)
    local_smtp = Settings(environment="local", mail_delivery="smtp")
    assert isinstance(transport_for(local_smtp), SmtpEmailSender)
    assert Settings(environment="test", mail_delivery="mailbox").mail_transport == "mailbox"


def test_production_refuses_the_file_mailbox() -> None:
    with pytest.raises(ValidationError, match="MAIL_DELIVERY=mailbox"):
        Settings(environment="production", mail_delivery="mailbox")


def test_qr_code_is_plain_svg_of_the_uri() -> None:
    uri = mfa.provisioning_uri(mfa.new_totp_secret(), account="a@example.org", issuer="Test")
    svg = mfa.qr_svg(uri)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    tags = {element.tag.split("}")[-1] for element in root.iter()}
    assert tags <= {"svg", "path"}  # nothing a page's CSP would have to run or style
    assert "style" not in svg
    assert "script" not in svg
