"""The `learnstream` command against the real test database: idempotent first run.

Run twice, every ``create`` finds what the first run made (one tenant, one account, one
live key) and says so; the enrolment link's token is stored only as a digest; each
creation is audited; an unknown tenant is refused with exit status 1.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import asyncpg

from api.services import tokens
from infra import cli
from learnstream.settings import REPO_ROOT, Settings

TOKEN = re.compile(r"token=(lst_[A-Za-z0-9_-]+)")


async def learnstream(settings: Settings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await cli.run(cli.parse_args(argv), settings, out)
    return status, out.getvalue()


async def test_tenant_create_is_idempotent(settings: Settings, db_pool: asyncpg.Pool) -> None:
    status, said = await learnstream(settings, "tenant", "create", "school", "--name", "School")
    assert status == 0
    assert "tenant school (School): created" in said
    status, said = await learnstream(settings, "tenant", "create", "school", "--name", "Other")
    assert status == 0
    assert "tenant school (School): exists (nothing changed)" in said
    assert await db_pool.fetchval("SELECT count(*) FROM tenants") == 1
    audited = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'tenant_created'"
    )
    assert audited == 1


async def test_user_create_is_idempotent_and_links_are_hashed(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    await learnstream(settings, "tenant", "create", "school")
    argv = (
        "user",
        "create",
        "--tenant",
        "school",
        "--email",
        "head@example.org",
        "--role",
        "admin",
    )
    status, first = await learnstream(settings, *argv, "--name", "Head")
    assert status == 0
    assert "user head@example.org in school: created" in first
    assert "set up an authenticator app (TOTP)" in first
    match = TOKEN.search(first)
    assert match, first
    token = match[1]
    stored = await db_pool.fetch("SELECT token_sha256, purpose FROM account_tokens")
    assert [(bytes(r["token_sha256"]), r["purpose"]) for r in stored] == [
        (tokens.token_sha256(token), "enrol")
    ]
    dump = " ".join(str(dict(r)) for r in await db_pool.fetch("SELECT * FROM account_tokens"))
    assert token not in dump  # only the digest is at rest

    status, again = await learnstream(settings, *argv)
    assert status == 0
    assert "user head@example.org in school: exists" in again
    assert "--new-link" in again
    assert TOKEN.search(again) is None  # no second link unless asked for
    assert await db_pool.fetchval("SELECT count(*) FROM users") == 1

    status, fresh = await learnstream(settings, *argv, "--role", "teacher", "--new-link")
    assert status == 0
    assert "earlier links no longer work" in fresh
    assert "does not change roles" in fresh
    new_token = TOKEN.search(fresh)
    assert new_token
    assert new_token[1] != token
    live = await db_pool.fetchval(
        "SELECT count(*) FROM account_tokens WHERE used_at IS NULL AND expires_at > now()"
    )
    assert live == 1  # the first link died with the second
    actions = [
        r["action"]
        for r in await db_pool.fetch(
            "SELECT action FROM audit_log WHERE actor_kind = 'system' AND actor_id = 'cli' "
            "ORDER BY id"
        )
    ]
    assert actions == [
        "tenant_created",
        "user_created",
        "enrolment_link_issued",
        "enrolment_link_issued",
    ]


async def test_apikey_create_is_idempotent(settings: Settings, db_pool: asyncpg.Pool) -> None:
    await learnstream(settings, "tenant", "create", "school")
    argv = ("apikey", "create", "--tenant", "school", "--app", "quiz")
    status, first = await learnstream(settings, *argv, "--scope", "events:write")
    assert status == 0
    plaintext = re.search(r"^  key +(lsk_\S+)$", first, re.MULTILINE)
    assert plaintext, first
    status, again = await learnstream(settings, *argv, "--scope", "views:read")
    assert status == 0
    assert ": exists" in again
    assert plaintext[1] not in again  # the secret is never shown again
    assert "not the scopes asked for" in again
    assert await db_pool.fetchval("SELECT count(*) FROM api_keys") == 1


async def test_unknown_tenant_is_refused(settings: Settings, db_pool: asyncpg.Pool) -> None:
    status, said = await learnstream(
        settings,
        "user",
        "create",
        "--tenant",
        "nowhere",
        "--email",
        "a@b.org",
        "--role",
        "admin",
    )
    assert status == cli.EXIT_REFUSED
    assert "learnstream tenant create nowhere" in said
    status, said = await learnstream(
        settings, "apikey", "create", "--tenant", "nowhere", "--app", "x"
    )
    assert status == cli.EXIT_REFUSED
    assert await db_pool.fetchval("SELECT count(*) FROM users") == 0


def test_module_runs_as_a_command() -> None:
    # The installed script is infra.cli:main; `python -m infra.cli` is the same function.
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", "mail", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: learnstream mail" in done.stdout
