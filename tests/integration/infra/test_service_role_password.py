"""The migrate step gives the services' role the password of its URL
(infra.services.set_service_role_password), since migrations create it without one."""

from __future__ import annotations

import uuid

import pytest

from infra import services
from learnstream import db
from learnstream.exceptions import ConfigurationError
from learnstream.settings import Settings


async def test_migrate_sets_the_service_role_password(migrated_database: Settings) -> None:
    # A role of this test's own: the real service role is shared by parallel test runs.
    role = f"ls_pw_{uuid.uuid4().hex[:10]}"
    password = "p'w\"d %40 " + uuid.uuid4().hex  # quotes and an escape survive
    settings = migrated_database.model_copy(
        update={
            "database_service_role": role,
            "database_service_url": f"postgresql://{role}:{password.replace(' ', '%20')}"
            "@127.0.0.1:5432/learnstream",
        }
    )
    conn = await db.connect(settings, role="owner")
    try:
        await db.grant_service_role(conn, role)
        assert (
            await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
            is None
        )
        # md5 hashes are deterministic (SCRAM's are salted), so the stored one shows
        # which password was set: the URL's, percent-decoded, quotes intact.
        await conn.execute("SET password_encryption = 'md5'")
        assert await services.set_service_role_password(conn, settings) is True
        stored = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        expected = await conn.fetchval(
            "SELECT 'md5' || md5($1 || $2)", password.replace("%40", "@"), role
        )
        assert stored == expected
        # No password in the URL (local trust): nothing changes.
        no_password = settings.model_copy(
            update={"database_service_url": f"postgresql://{role}@127.0.0.1:5432/learnstream"}
        )
        assert await services.set_service_role_password(conn, no_password) is False
        # A URL naming another user than the role is refused, not applied to the wrong role.
        other = settings.model_copy(
            update={"database_service_url": "postgresql://someone:pw@127.0.0.1:5432/x"}
        )
        with pytest.raises(ConfigurationError, match="someone"):
            await services.set_service_role_password(conn, other)
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE "{role}"')
        await conn.close()
