"""Checks on ids that arrive as path strings before they reach a uuid column."""

from __future__ import annotations

import uuid


def is_uuid(value: str) -> bool:
    """True if ``value`` parses as a UUID (a malformed id is simply "not found")."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
