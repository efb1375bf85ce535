"""``python -m ingest.apikeys``: a created key authenticates, a revoked one no longer does."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import asyncpg

from learnstream.apikeys import Scope, authenticate_api_key
from learnstream.settings import Settings


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.apikeys", *args],
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_create_prints_the_key_once_and_revoke_disables_it(
    migrated_database: Settings, db_pool: asyncpg.Pool
) -> None:
    created = run_cli(migrated_database, "create", "--tenant", "school-9", "--app", "tutor")
    assert created.returncode == 0, created.stderr
    plaintext = re.search(r"^api_key: (\S+)$", created.stdout, re.MULTILINE)
    key_id = re.search(r"^key_id:  (\S+)$", created.stdout, re.MULTILINE)
    assert plaintext
    assert key_id
    assert plaintext[1].startswith(key_id[1] + "_")

    key = await authenticate_api_key(db_pool, plaintext[1])
    assert key is not None
    assert (key.tenant_id, key.app_name, key.key_id) == ("school-9", "tutor", key_id[1])
    stored = await db_pool.fetchval("SELECT key_sha256 FROM api_keys WHERE key_id=$1", key_id[1])
    assert plaintext[1].encode() not in bytes(stored)  # only the digest is kept

    revoked = run_cli(migrated_database, "revoke", key_id[1])
    assert revoked.returncode == 0, revoked.stderr
    assert await authenticate_api_key(db_pool, plaintext[1]) is None
    assert "already revoked" in run_cli(migrated_database, "revoke", key_id[1]).stdout


async def test_bad_tenant_ids_and_unknown_keys_are_refused(migrated_database: Settings) -> None:
    bad_tenant = run_cli(migrated_database, "create", "--tenant", "a:b", "--app", "x")
    assert bad_tenant.returncode != 0
    assert "no ':'" in bad_tenant.stderr
    unknown = run_cli(migrated_database, "revoke", "lsk_000000000000")
    assert unknown.returncode != 0
    assert "no API key" in unknown.stderr


async def test_create_grants_the_named_scopes_default_events_write_only(
    migrated_database: Settings, db_pool: asyncpg.Pool
) -> None:
    plain = run_cli(migrated_database, "create", "--tenant", "school-9", "--app", "poster")
    assert plain.returncode == 0, plain.stderr
    assert re.search(r"^scopes:  events:write$", plain.stdout, re.MULTILINE)
    reader = run_cli(
        migrated_database,
        *("create", "--tenant", "school-9", "--app", "reader"),
        *("--scope", "views:read", "--scope", "content:read"),
    )
    assert reader.returncode == 0, reader.stderr
    plaintext = re.search(r"^api_key: (\S+)$", reader.stdout, re.MULTILINE)
    assert plaintext
    key = await authenticate_api_key(db_pool, plaintext[1])
    assert key is not None
    assert key.scopes == {Scope.VIEWS_READ, Scope.CONTENT_READ}
    unknown = run_cli(
        migrated_database, "create", "--tenant", "school-9", "--app", "x", "--scope", "users:write"
    )
    assert unknown.returncode != 0
    assert "invalid choice" in unknown.stderr
