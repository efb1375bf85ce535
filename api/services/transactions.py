"""One way to open a transaction whether a function was handed a pool or a connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


@asynccontextmanager
async def transaction(db: Any) -> AsyncIterator[Any]:
    """Yield a connection inside a transaction; a pool lends one, a connection nests (savepoint)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
