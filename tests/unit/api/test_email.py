"""What the account mails say: the token, a link, and how long it lasts."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

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


def test_mailed_links_keep_tokens_out_of_urls() -> None:
    """Finding L5: a token in a query string reaches access logs; in the fragment it never
    leaves the browser. Every link in a mail points at the dashboard page (which the API
    serves, so no 404 either) with the token after ``#`` and nothing sent to a server."""
    mails = [
        email.verification_email("a@example.org", "lst_v1234567890", SETTINGS),
        email.password_reset_email("a@example.org", "lst_r1234567890", SETTINGS),
        email.unlock_email("a@example.org", "lst_u1234567890", SETTINGS),
    ]
    for mail in mails:
        links = re.findall(r"https?://\S+", mail.body)
        assert len(links) == 1, mail.body
        parts = urlsplit(links[0])
        assert parts.path == "/dashboard"
        assert parts.query == ""  # what a browser sends: path and query only
        assert "lst_" not in f"{parts.path}?{parts.query}"
        fragment = parse_qs(parts.fragment)
        assert fragment["token"] == [re.findall(r"lst_\w+", mail.body)[0]]
        assert fragment["action"][0] in {"verify-email", "reset-password", "unlock"}
