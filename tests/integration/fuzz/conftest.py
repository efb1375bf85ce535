"""The ingest and read API as real processes (``python -m ingest``, ``python -m api``) on
free loopback ports, for schemathesis to call over HTTP; a local SMTP receiver for the
API's mail; an ingest API key, a signed-up teacher/author/reviewer of the API, an
admin signed in with MFA (:class:`AdminSession`) and a client-app API key of the API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from api.exceptions import ConflictError
from api.services import accounts, mfa
from api.services.principals import Role
from infra import demo, services
from learnstream.apikeys import Scope, create_api_key
from learnstream.settings import Settings

TENANT = "fuzz-school"
PASSWORD = "Correct-horse-42"
FUZZ_ROLES = frozenset({Role.TEACHER, Role.AUTHOR, Role.REVIEWER})
# The admin holds every staff role, so its fuzz reaches every route a user can.
ADMIN_ROLES = frozenset(Role) - {Role.LEARNER}


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


@dataclass
class AdminSession:
    """An admin who signed in with MFA over HTTP; :meth:`headers` gives a valid bearer.

    Fuzzed calls may log the admin out (logout, refresh with a generated token), so
    each operation first trades the refresh token for a new pair and, if the family is
    gone, signs in again spending one of the backup codes (a TOTP code works once per
    30 s step, too slow to sign in before every operation).
    """

    base_url: str
    login: dict[str, str]
    backup_codes: list[str]
    refresh_token: str = ""
    access_token: str = ""
    sign_ins: int = field(default=0)

    def headers(self, _operation: str = "") -> dict[str, str]:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            if self.refresh_token:
                answer = client.post("/v1/auth/refresh", json={"refresh_token": self.refresh_token})
                if answer.status_code == 200:
                    self._keep(answer.json())
                    return self._bearer()
            self._sign_in(client)
        return self._bearer()

    def _sign_in(self, client: httpx.Client) -> None:
        answer = client.post("/v1/auth/login", json=self.login)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mfa_required"], body
        assert self.backup_codes, "the fuzz spent every backup code of the admin"
        answer = client.post(
            "/v1/auth/login/mfa",
            json={"mfa_token": body["mfa_token"], "backup_code": self.backup_codes.pop()},
        )
        assert answer.status_code == 200, answer.text
        self.sign_ins += 1
        self._keep(answer.json())

    def _keep(self, tokens: dict[str, str]) -> None:
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@pytest.fixture
async def api_admin(
    api_service: RunningService, db_pool: asyncpg.Pool, fuzz_settings: Settings
) -> AdminSession:
    """An admin of ``TENANT`` with MFA enrolled, signed in over HTTP with a TOTP code."""
    await _ensure_tenant(db_pool)
    user = await accounts.create_user(
        db_pool,
        fuzz_settings,
        tenant_id=TENANT,
        email_address="fuzz.admin@example.org",
        password=PASSWORD,
        roles=ADMIN_ROLES,
        email_verified=True,
        now=datetime.now(UTC),
    )
    now = datetime.now(UTC)
    enrolment = await mfa.begin_enrolment(
        db_pool, user_id=user.id, issuer="fuzz", settings=fuzz_settings
    )
    async with Redis.from_url(fuzz_settings.redis_url) as redis:
        backup_codes = await mfa.confirm_enrolment(
            db_pool,
            redis,
            fuzz_settings,
            tenant_id=TENANT,
            user_id=user.id,
            code=mfa.code_at(enrolment.secret, now),
            ip=None,
            now=now,
        )
    session = AdminSession(
        api_service.base_url,
        {"tenant_id": TENANT, "email": user.email, "password": PASSWORD},
        backup_codes,
    )
    async with httpx.AsyncClient(base_url=api_service.base_url, timeout=10) as client:
        answer = await client.post("/v1/auth/login", json=session.login)
        assert answer.status_code == 200, answer.text
        # The enrolment spent the current step; an authenticator shows the next one 30 s on.
        code = mfa.code_at(enrolment.secret, datetime.now(UTC) + timedelta(seconds=30))
        answer = await client.post(
            "/v1/auth/login/mfa", json={"mfa_token": answer.json()["mfa_token"], "code": code}
        )
        assert answer.status_code == 200, answer.text
    session._keep(answer.json())
    return session


@pytest.fixture
async def api_client_key(db_pool: asyncpg.Pool, api_service: RunningService) -> str:
    """A client-app API key of ``TENANT`` for the read API, made with the project's own
    key-creation function, holding every scope."""
    await _ensure_tenant(db_pool)
    issued = await create_api_key(db_pool, tenant_id=TENANT, app_name="fuzz-api", scopes=Scope)
    return issued.plaintext


async def _ensure_tenant(db_pool: asyncpg.Pool) -> None:
    with contextlib.suppress(ConflictError):
        await accounts.create_tenant(db_pool, tenant_id=TENANT, name="Fuzz School")
