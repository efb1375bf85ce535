"""Which errors the batch machinery retries (transient) and which it dead-letters."""

from __future__ import annotations

import asyncpg
import pytest

from learnstream.exceptions import ServiceUnavailableError
from processors.base import is_transient
from processors.exceptions import DeliveryFailed, PoisonEvent


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        ServiceUnavailableError("PostgreSQL did not answer"),
        DeliveryFailed("1 of 3 records not acked"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    ],
)
def test_unreachable_or_busy_services_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        PoisonEvent("no skill ids"),
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),
        asyncpg.InterfaceError("the server expects 2 arguments, 3 were passed"),
        ValueError("bad"),
    ],
)
def test_data_and_programming_errors_are_not_transient(error: Exception) -> None:
    assert not is_transient(error)
