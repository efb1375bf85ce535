"""One way to open a transaction whether a function was handed a pool or a connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from learnstream.db import Connection, Queryable


@asynccontextmanager
async def transaction(db: Queryable) -> AsyncIterator[Connection]:
    """Yield a connection inside a transaction; a pool lends one, a connection nests (savepoint)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        connection = cast(Connection, db)  # not a pool: a connection or a pool's proxy
        async with connection.transaction():
            yield connection
