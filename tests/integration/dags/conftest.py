"""Fixtures for running the DAGs end to end with ``dag.test()`` (in ``.venv-airflow``).

* Airflow gets a metadata database of its own (SQLite under a temporary
  ``AIRFLOW_HOME``, migrated once) and reads the DAGs from the repository's ``dags/``.
* ``project_settings``: a PostgreSQL database of this session, migrated, and a data
  folder; exported as ``LEARNSTREAM_*`` variables because the tasks run in this
  process and read ``get_settings()``.
* ``small_lake``: a lake built from real shared data with synthetic timestamps
  (``ml.datasets.build_lake_from_dataset``), then rewritten in small batches the way
  the lake sink writes it, so compaction has work to do.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    # Airflow reads its configuration when first imported: set it before any test does.
    _AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="learnstream-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

LAKE_TOPIC = "learnstream.attempts.v1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            # dag.test() calls Airflow's execution API in process through starlette's
            # TestClient, which warns that it still runs on httpx (Airflow's choice).
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
                )
            )


LAKE_START = datetime(2024, 3, 1, tzinfo=UTC)
SINK_BATCH_ROWS = 400  # rows per simulated sink batch (per Kafka partition)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A migrated Airflow metadata database for this session; removed afterwards."""
    home = Path(os.environ["AIRFLOW_HOME"])
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def project_settings(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[object]:
    """Settings of a migrated test database and data folder, exported for the tasks."""
    from infra import services
    from learnstream import db
    from learnstream.settings import Settings, get_settings

    settings = Settings(
        environment="test",
        database_url=f"postgresql://postgres@127.0.0.1:5432/learnstream_dags_{os.getpid()}",
        data_dir=tmp_path_factory.mktemp("dags-data"),
        dataset_dir=shared_data,
        log_json=False,
    )
    services.ensure_postgres(settings)
    asyncio.run(db.drop_database(settings))
    asyncio.run(services.prepare_storage(settings))
    with pytest.MonkeyPatch.context() as patch:
        for name in ("environment", "database_url", "data_dir", "dataset_dir"):
            patch.setenv(f"LEARNSTREAM_{name.upper()}", str(getattr(settings, name)))
        get_settings.cache_clear()
        yield settings
    get_settings.cache_clear()
    asyncio.run(db.drop_database(settings))


@dataclass(frozen=True)
class SmallLake:
    """What the lake fixture wrote (for tests that compute expectations independently)."""

    root: Path
    rows: int
    tenants: tuple[str, ...]


@pytest.fixture(scope="session")
def small_lake(project_settings, shared_data: Path, tmp_path_factory) -> SmallLake:
    """Two tenants of real answers: 100 ASSIST2009 learners (skill-level items) and 40
    learners of the AKT file (real problem ids, multi-skill questions), learners
    starting an hour apart from 2024-03-01 and answering every 90 s."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from learnstream import lake
    from ml.datasets import build_lake_from_dataset
    from ml.sources import read_kt_file

    scratch = tmp_path_factory.mktemp("lake-scratch")
    sources = {
        "assist": read_kt_file(
            shared_data / "assistments2009_dkvmn" / "assist2009_updated_test.csv", "3line"
        )[:100],
        "akt": read_kt_file(
            shared_data / "assistments2009_akt_pid" / "assist2009_pid_test1.csv", "4line"
        )[:40],
    }
    for tenant_id, sequences in sources.items():
        build_lake_from_dataset(
            sequences, scratch, tenant_id=tenant_id, topic=LAKE_TOPIC, start=LAKE_START
        )
    # Rewrite as the sink would: many small batches per Kafka partition, in offset order.
    table = lake.read_attempts(scratch)
    root = lake.default_root(project_settings)
    written = 0
    for partition in sorted(pc.unique(table["kafka_partition"]).to_pylist()):
        rows = table.filter(pc.equal(table["kafka_partition"], partition)).sort_by(
            [("tenant_id", "ascending"), ("kafka_offset", "ascending")]
        )
        # Each tenant's build counted offsets from 0; one topic partition needs one sequence.
        offsets = pa.array(range(rows.num_rows), pa.int64())
        rows = rows.set_column(rows.schema.get_field_index("kafka_offset"), "kafka_offset", offsets)
        for start in range(0, rows.num_rows, SINK_BATCH_ROWS):
            batch = rows.slice(start, SINK_BATCH_ROWS).select(lake.ATTEMPT_SCHEMA.names)
            lake.write_attempts(root, batch, topic=LAKE_TOPIC, partition=partition)
            written += batch.num_rows
    return SmallLake(root, written, tuple(sorted(sources)))


@dataclass(frozen=True)
class DagRunResult:
    """What one ``dag.test()`` run did."""

    run_id: str
    state: str
    task_states: dict[str, str]
    interval_start: datetime
    interval_end: datetime


@pytest.fixture(scope="session")
def dag_bag(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture
def run_dag(dag_bag, project_settings):
    """Run a DAG with ``dag.test()`` for the daily interval ending at ``interval_end``."""

    def run(dag_id: str, interval_end: datetime, conf: dict[str, object]) -> DagRunResult:
        dag = dag_bag.get_dag(dag_id)
        # A data-interval timetable gives a manual run at a boundary the interval ending there.
        dag_run = dag.test(logical_date=interval_end, run_conf=conf)
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        return DagRunResult(
            dag_run.run_id,
            str(dag_run.state),
            states,
            dag_run.data_interval_start,
            dag_run.data_interval_end,
        )

    return run


def fetch(settings, query: str, *args: object) -> list[dict[str, Any]]:
    """Rows of one query on the test database, as dicts."""
    from learnstream import db

    async def run() -> list[dict[str, Any]]:
        connection = await db.connect(settings)
        try:
            return [dict(r) for r in await connection.fetch(query, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())
