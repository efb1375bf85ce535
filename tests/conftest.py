"""Shared fixtures: real services, started once per test session, isolated per test.

* ``broker``: a Tansu process on a free loopback port for this session, stopped at the end.
* ``base_settings``: Settings pointing at that broker, a database of this session's
  own (``learnstream_test_<pid>``, dropped at the end) and Redis.
* ``settings``: per test, a unique Kafka topic namespace and Redis key namespace, so
  tests never see each other's topics, consumer groups or keys.
* ``db_pool``: an asyncpg pool (the services' role) on the migrated test database,
  tables emptied per test (as the owner).

Unit tests use none of these and start nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from infra import services
from learnstream import db
from learnstream.kafka import ensure_topics
from learnstream.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The tier comes from the folder, so a test cannot forget its marker.
    for item in items:
        for tier in ("unit", "integration", "e2e", "property"):
            if f"{os.sep}{tier}{os.sep}" in str(item.path):
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the repository; tests that need one skip without it."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="session")
def broker(run_dir: Path) -> Iterator[services.Broker]:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{services.free_port()}", run_dir=run_dir)
    started = services.start_broker(settings)
    yield started
    services.stop_broker(settings)


@pytest.fixture(scope="session")
def base_settings(broker: services.Broker, run_dir: Path) -> Settings:
    settings = Settings(
        environment="test",
        kafka_bootstrap=broker.bootstrap,
        database_url=f"postgresql://postgres@127.0.0.1:5432/learnstream_test_{os.getpid()}",
        redis_url="redis://127.0.0.1:6379/0",
        redis_namespace=f"test{os.getpid()}",
        run_dir=run_dir,
        data_dir=run_dir / "data",
        log_json=False,
        topic_partitions=4,
        consumer_session_timeout_s=4.0,
        consumer_heartbeat_interval_s=0.5,
        ingest_delivery_timeout_ms=3000,
        # Free ports, so parallel runs that start the services do not collide.
        api_metrics_port=services.free_port(),
        ingest_metrics_port=services.free_port(),
    )
    services.ensure_postgres(settings)
    services.ensure_redis(settings)
    return settings


@pytest.fixture(scope="session")
async def migrated_database(base_settings: Settings) -> AsyncIterator[Settings]:
    await db.drop_database(base_settings)
    await services.prepare_storage(base_settings)
    yield base_settings
    await db.drop_database(base_settings)


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Per-test settings: its own topic namespace and Redis key namespace."""
    unique = uuid.uuid4().hex[:10]
    return base_settings.model_copy(
        update={
            "kafka_topic_namespace": f"t{unique}",
            "redis_namespace": f"{base_settings.redis_namespace}:{unique}",
        }
    )


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """Creates every topic of this test's namespace; returns the settings."""
    ensure_topics(settings)
    return settings


async def empty_tables(settings: Settings) -> None:
    """Empty every table but schema_migrations, as the owner (the services may not TRUNCATE)."""
    conn = await db.connect(settings, role="owner")
    try:
        await conn.execute(
            """
            DO $$ DECLARE t text; BEGIN
              FOR t IN SELECT tablename FROM pg_tables
                       WHERE schemaname = 'public' AND tablename <> 'schema_migrations' LOOP
                EXECUTE format('TRUNCATE %I CASCADE', t);
              END LOOP;
            END $$;
            """
        )
    finally:
        await conn.close()


@pytest.fixture
async def db_pool(migrated_database: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the migrated test database, every table but schema_migrations emptied.

    It logs in as the services' role (``database_service_role``), as the services do,
    so a test sees their privileges; the tables are emptied as the owner.
    """
    await empty_tables(migrated_database)
    pool = await db.create_pool(migrated_database, max_size=5)
    yield pool
    await pool.close()
