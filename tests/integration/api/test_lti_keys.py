"""The tool's signing keys and the LTI command line (api/lti.py, api/services/lti/keys.py)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import asyncpg

from api import lti
from api.services.lti import keys, platforms
from learnstream.settings import Settings


async def test_rotation_keeps_the_old_key_published_for_a_day(
    migrated_database: Settings, db_pool: asyncpg.Pool
) -> None:
    first = (await lti._rotate(migrated_database))["kid"]
    second = (await lti._rotate(migrated_database))["kid"]
    now = datetime.now(UTC)
    published = await keys.jwks(db_pool, migrated_database, now=now)
    assert [k["kid"] for k in published["keys"]] == [second, first]
    assert all("d" not in k for k in published["keys"])  # public parts only
    assert str((await keys.signing_key(db_pool, migrated_database, now=now)).kid) == second
    later = await keys.jwks(db_pool, migrated_database, now=now + timedelta(days=2))
    assert [k["kid"] for k in later["keys"]] == [second]


async def test_register_from_the_command_line(
    migrated_database: Settings, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')")
    args = argparse.Namespace(
        tenant="acme",
        platform_id="moodle",
        issuer="https://moodle.example.org",
        client_id="abc123",
        auth_login_url="https://moodle.example.org/mod/lti/auth.php",
        auth_token_url="https://moodle.example.org/mod/lti/token.php",
        jwks_url="https://moodle.example.org/mod/lti/certs.php",
        deployment_id=["1"],
    )
    printed = await lti._register(migrated_database, args)
    assert printed["tool_launch_url"].endswith("/v1/lti/launch")
    found = await platforms.find(db_pool, issuer="https://moodle.example.org", client_id=None)
    assert found is not None
    assert (found.tenant_id, found.deployment_ids) == ("acme", ("1",))
