"""Cursor pagination: a page of items and an opaque cursor for the next one.

A cursor is base64url of a key this API issued (an offset, a row id, a UUID, a
composite key). Clients can send anything back, so :func:`decode_cursor` decodes and
validates in one place: every failure (bad base64, not UTF-8, not the key kind the
route expects, out of the database's range) is a 422 naming ``query.cursor``, never
an exception deeper down.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from api.exceptions import InvalidInputError

T = TypeVar("T")
K = TypeVar("K")
DEFAULT_PAGE = 50
MAX_PAGE = 500
# PostgreSQL's bigint (int8) range: every integer key a cursor names fits in it.
INT8_MAX = 2**63 - 1
# The most characters a cursor may have (the longest key issued is well under it).
MAX_CURSOR_CHARS = 512

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="next_cursor of the previous page",
    ),
]


class Page(BaseModel, Generic[T]):
    """One page; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(last_key: str) -> str:
    """An opaque cursor after ``last_key`` (clients must not parse it)."""
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def text_key(key: str) -> str:
    """A key used as text (any non-empty string)."""
    if not key:
        raise ValueError("empty key")
    return key


def offset_key(key: str) -> int:
    """A row offset: ASCII digits, 0 to :data:`INT8_MAX`."""
    return _bounded_int(key, minimum=0)


def id_key(key: str) -> int:
    """A bigint row id: ASCII digits, 1 to :data:`INT8_MAX`."""
    return _bounded_int(key, minimum=1)


def uuid_key(key: str) -> str:
    """A UUID in its canonical text form."""
    return str(uuid.UUID(key))


def _bounded_int(key: str, *, minimum: int) -> int:
    # isdigit() alone admits "²" and other Unicode digits int() refuses; the length
    # check keeps int() from parsing a megabyte of digits.
    if not (key.isascii() and key.isdigit()) or len(key) > 19:
        raise ValueError("not a whole number")
    value = int(key)
    if not minimum <= value <= INT8_MAX:
        raise ValueError("out of range")
    return value


def decode_cursor(cursor: str | None, parse: Callable[[str], K]) -> K | None:
    """The key a cursor stands for, checked by ``parse`` (:func:`offset_key`,
    :func:`id_key`, :func:`uuid_key`, :func:`text_key` or the route's own, which raises
    ValueError for a key it never issues); None without a cursor; InvalidInputError
    naming ``query.cursor`` for anything else."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        return parse(key)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(
            "cursor is not one this API issued", field="query.cursor", reason="malformed"
        ) from exc


def next_cursor(keys: list[str], limit: int) -> str | None:
    """The cursor after the last of ``keys`` when the page came back full, else None."""
    return encode_cursor(keys[-1]) if len(keys) == limit and keys else None
