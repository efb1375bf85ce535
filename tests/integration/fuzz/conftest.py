"""The ingest and read API as real processes (``python -m ingest``, ``python -m api``) on
free loopback ports, for schemathesis to call over HTTP; a local SMTP receiver for the
API's mail; an ingest API key and a signed-up teacher/author/reviewer of the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from api.services import accounts
from api.services.principals import Role
from infra import demo, services
from learnstream.apikeys import create_api_key
from learnstream.settings import Settings

TENANT = "fuzz-school"
PASSWORD = "Correct-horse-42"
FUZZ_ROLES = frozenset({Role.TEACHER, Role.AUTHOR, Role.REVIEWER})


@dataclass(frozen=True)
class RunningService:
    """A service process started for the fuzz tests."""

    base_url: str
    settings: Settings


class _DropMail:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    port = services.free_port()
    controller = Controller(_DropMail(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
def fuzz_settings(topics: Settings, smtp_port: int) -> Settings:
    """Test settings with free ports, cheap password hashing, mail to the local receiver."""
    return topics.model_copy(
        update={
            "ingest_port": services.free_port(),
            "api_port": services.free_port(),
            "password_hash_profile": "cheapest",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "log_level": "WARNING",
            # The fuzz makes ~1,000 calls a minute from one address; rate limits have
            # their own tests, here they would only turn calls into 429s.
            "api_rate_limit_per_minute": 1_000_000,
            "api_auth_rate_limit_per_minute": 1_000_000,
        }
    )


async def _start(settings: Settings, module: str, port: int) -> int:
    """Start ``python -m <module>`` and wait until its /readyz answers 200; its PID."""
    name = f"fuzz-{module}"
    pid = demo.start_process(settings, name, [module])
    try:
        await demo.wait_ready(
            f"http://127.0.0.1:{port}/readyz",
            timeout_s=60,
            log_path=settings.run_dir / f"{name}.log",
        )
    except BaseException:
        await asyncio.to_thread(services.stop_pid, pid)
        raise
    return pid


@pytest.fixture
async def ingest_service(
    fuzz_settings: Settings, db_pool: asyncpg.Pool
) -> AsyncIterator[RunningService]:
    pid = await _start(fuzz_settings, "ingest", fuzz_settings.ingest_port)
    yield RunningService(f"http://127.0.0.1:{fuzz_settings.ingest_port}", fuzz_settings)
    await asyncio.to_thread(services.stop_pid, pid)


@pytest.fixture
async def api_service(
    fuzz_settings: Settings, db_pool: asyncpg.Pool
) -> AsyncIterator[RunningService]:
    pid = await _start(fuzz_settings, "api", fuzz_settings.api_port)
    yield RunningService(f"http://127.0.0.1:{fuzz_settings.api_port}", fuzz_settings)
    await asyncio.to_thread(services.stop_pid, pid)


@pytest.fixture
async def ingest_key(db_pool: asyncpg.Pool) -> str:
    return (await create_api_key(db_pool, tenant_id=TENANT, app_name="fuzz")).plaintext


@pytest.fixture
async def api_user(db_pool: asyncpg.Pool, fuzz_settings: Settings) -> dict[str, str]:
    """Login form of a verified teacher/author/reviewer (roles that need no MFA)."""
    await accounts.create_tenant(db_pool, tenant_id=TENANT, name="Fuzz School")
    user = await accounts.create_user(
        db_pool,
        fuzz_settings,
        tenant_id=TENANT,
        email_address="fuzz.teacher@example.org",
        password=PASSWORD,
        roles=FUZZ_ROLES,
        email_verified=True,
        now=datetime.now(UTC),
    )
    return {"tenant_id": TENANT, "email": user.email, "password": PASSWORD}
