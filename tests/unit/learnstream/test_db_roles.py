"""Which URL each database role uses (learnstream.db.url_for_role), and the settings' guard."""

from __future__ import annotations

import pydantic
import pytest

from learnstream import db
from learnstream.settings import Settings


def test_the_service_url_is_the_owner_url_with_the_user_swapped() -> None:
    settings = Settings(database_url="postgresql://admin:s3cret@db.example:6543/ls?sslmode=require")
    assert db.url_for_role(settings, "owner") == settings.database_url
    # The owner's password is not handed to the service role.
    assert (
        db.url_for_role(settings)
        == "postgresql://learnstream_service@db.example:6543/ls?sslmode=require"
    )


def test_a_user_less_url_gets_the_service_role() -> None:
    settings = Settings(database_url="postgresql://127.0.0.1/ls", database_service_role="svc")
    assert db.url_for_role(settings, "service") == "postgresql://svc@127.0.0.1/ls"


def test_an_explicit_service_url_wins() -> None:
    settings = Settings(database_service_url="postgresql://svc:pw@pooler:6432/ls")
    assert db.url_for_role(settings) == "postgresql://svc:pw@pooler:6432/ls"
    assert db.url_for_role(settings, "owner") == settings.database_url


@pytest.mark.parametrize(
    "changes",
    [
        {"database_url": "postgresql://app@127.0.0.1/ls", "database_service_role": "app"},
        {"database_service_role": "Robert'); DROP"},
    ],
    ids=["service role is the owner", "not a plain role name"],
)
def test_settings_refuse_a_bad_service_role(changes: dict[str, str]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings(**changes)  # type: ignore[arg-type]
