"""The one-shot job of the compose file (`init`) migrates a fresh database and creates
every topic, run as the container runs it: ``python -m infra.entrypoint init`` in a
child process configured only by ``LEARNSTREAM_*`` variables."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

from learnstream import db
from learnstream.kafka import Stream, admin_client
from learnstream.settings import REPO_ROOT, Settings


async def test_init_migrates_and_creates_the_topics(settings: Settings) -> None:
    fresh = settings.model_copy(
        update={
            "database_url": settings.database_url.rsplit("/", 1)[0]
            + f"/learnstream_init_{uuid.uuid4().hex[:8]}"
        }
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEARNSTREAM_")},
        **fresh.as_env(),
        "PYTHONPATH": str(REPO_ROOT),
    }
    try:
        for _ in range(2):  # a second run (a restarted job) changes nothing and succeeds
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "infra.entrypoint", "init",
                env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
            assert process.returncode == 0, stderr.decode()[-2000:]
        # The owner reads the schema version (the service role may not create its table).
        conn = await db.connect(fresh, role="owner")
        try:
            assert await db.current_version(conn) == db.load_migrations()[-1].version
        finally:
            await conn.close()
        existing = admin_client(fresh).list_topics(timeout=10).topics
        assert {fresh.topic(s) for s in Stream} <= set(existing)
    finally:
        await db.drop_database(fresh)
