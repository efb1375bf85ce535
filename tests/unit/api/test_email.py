"""What the account mails say: the token, a link, and how long it lasts."""

from __future__ import annotations

from api.services import email
from learnstream.settings import Settings

SETTINGS = Settings(public_base_url="https://learn.example.org/")


def test_verification_mail_carries_token_and_link() -> None:
    mail = email.verification_email("ada@example.org", "lst_abc", SETTINGS)
    assert mail.to == "ada@example.org"
    assert "https://learn.example.org/dashboard#action=verify-email&token=lst_abc" in mail.body
    assert f"{SETTINGS.email_verification_ttl_s // 3600} hours" in mail.body


def test_reset_and_unlock_mails_carry_their_tokens() -> None:
    reset = email.password_reset_email("a@example.org", "lst_r", SETTINGS)
    unlock = email.unlock_email("a@example.org", "lst_u", SETTINGS)
    assert "#action=reset-password&token=lst_r" in reset.body
    assert "#action=unlock&token=lst_u" in unlock.body
    assert str(SETTINGS.login_max_failures) in unlock.body


def test_already_registered_mail_has_no_token() -> None:
    mail = email.already_registered_email("a@example.org", SETTINGS)
    assert "lst_" not in mail.body
