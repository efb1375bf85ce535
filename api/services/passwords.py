"""Password rules and argon2id hashing.

Hashing runs in a worker thread: one argon2id hash takes hundreds of ms of CPU
and must not stall the event loop that serves every other request.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from api.exceptions import FieldProblem

MIN_PASSWORD_CHARS = 10
# argon2 hashes any length, but an unbounded password is a cheap way to burn our CPU.
MAX_PASSWORD_CHARS = 128
MIN_DISTINCT_CHARS = 5

_PROFILES = {
    "rfc9106_low_memory": profiles.RFC_9106_LOW_MEMORY,
    "cheapest": profiles.CHEAPEST,
}


def password_problems(password: str, *, email: str) -> list[FieldProblem]:
    """Why ``password`` is unacceptable (empty list when it is fine), naming ``body.password``."""
    reasons = []
    if len(password) < MIN_PASSWORD_CHARS:
        reasons.append(f"must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        reasons.append(f"must have at most {MAX_PASSWORD_CHARS} characters")
    if len(set(password)) < MIN_DISTINCT_CHARS:
        reasons.append(f"must use at least {MIN_DISTINCT_CHARS} different characters")
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 3 and local_part in password.lower():
        reasons.append("must not contain the email address")
    return [FieldProblem("body.password", reason) for reason in reasons]


@lru_cache(maxsize=2)
def hasher(profile: str) -> PasswordHasher:
    """The argon2id hasher for a settings ``password_hash_profile``."""
    return PasswordHasher.from_parameters(_PROFILES[profile])


async def hash_password(password: str, *, profile: str) -> str:
    """The argon2id PHC string of ``password``."""
    return await asyncio.to_thread(hasher(profile).hash, password)


async def verify_password(password_hash: str | None, password: str, *, profile: str) -> bool:
    """True if ``password`` matches; a missing hash still costs one hash (no timing oracle)."""
    if password_hash is None:
        await asyncio.to_thread(hasher(profile).hash, password)
        return False
    try:
        return await asyncio.to_thread(hasher(profile).verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str, *, profile: str) -> bool:
    """True when the stored hash used weaker parameters than the current profile."""
    return hasher(profile).check_needs_rehash(password_hash)
