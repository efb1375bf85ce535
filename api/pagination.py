"""Cursor pagination: a page of items and an opaque cursor for the next one."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from api.exceptions import InvalidInputError

T = TypeVar("T")
DEFAULT_PAGE = 50
MAX_PAGE = 500

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


class Page(BaseModel, Generic[T]):
    """One page; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(last_key: str) -> str:
    """An opaque cursor after ``last_key`` (clients must not parse it)."""
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The key a cursor stands for; InvalidInputError naming ``query.cursor`` if forged."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(
            "cursor is not one this API issued", field="query.cursor", reason="malformed"
        ) from exc


def next_cursor(keys: list[str], limit: int) -> str | None:
    """The cursor after the last of ``keys`` when the page came back full, else None."""
    return encode_cursor(keys[-1]) if len(keys) == limit and keys else None
