"""Password rules and argon2id hashing (cheapest profile: speed only, same code path)."""

from __future__ import annotations

import pytest

from api.services import passwords


@pytest.mark.parametrize(
    ("password", "reason_has"),
    [
        ("short1!", "at least"),
        ("x" * (passwords.MAX_PASSWORD_CHARS + 1), "at most"),
        ("abababababab", "different characters"),
        ("my-ada.lovelace-pass", "email"),
    ],
)
def test_weak_passwords_are_named_with_their_reason(password: str, reason_has: str) -> None:
    problems = passwords.password_problems(password, email="ada.lovelace@example.org")
    assert problems
    assert all(p.field == "body.password" for p in problems)
    assert any(reason_has in p.reason for p in problems)


def test_a_decent_password_passes() -> None:
    assert passwords.password_problems("Correct-horse-42", email="ada@example.org") == []


async def test_hash_verifies_only_the_same_password() -> None:
    hashed = await passwords.hash_password("Correct-horse-42", profile="cheapest")
    assert hashed.startswith("$argon2id$")
    assert await passwords.verify_password(hashed, "Correct-horse-42", profile="cheapest")
    assert not await passwords.verify_password(hashed, "correct-horse-42", profile="cheapest")
    assert not await passwords.verify_password("not-a-hash", "x", profile="cheapest")
    assert not await passwords.verify_password(None, "Correct-horse-42", profile="cheapest")


async def test_weaker_hashes_are_flagged_for_rehash() -> None:
    cheap = await passwords.hash_password("Correct-horse-42", profile="cheapest")
    assert passwords.needs_rehash(cheap, profile="rfc9106_low_memory")
    assert not passwords.needs_rehash(cheap, profile="cheapest")
