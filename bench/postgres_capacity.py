"""PostgreSQL capacity: view writes per event, and where one instance saturates.

Run: ``.venv/bin/python -m bench.postgres_capacity [--records N] [--clients 1,2,4,8]``.
Prints two tables and writes ``bench/results/postgres_capacity.json``.

1. **Rows written per attempt**, counted, not estimated: real attempts (the AKT split of
   ASSISTments 2009, fitted BKT and calibrated items as in bench.processors_state) go
   through the real processors that consume attempts (learner_state, fraud, aggregates),
   batch by batch as a worker applies them (processors.base.BatchRunner, one
   transaction per batch with the offsets). Before and after each processor the
   database's ``pg_stat_user_tables`` (n_tup_ins, n_tup_upd, n_tup_del) and
   ``pg_stat_database.xact_commit`` are read; the deltas divided by the attempts are
   the writes per event, per table. Two batch sizes: full batches (a backlog, 500) and
   small ones (live traffic at a few hundred events/s: ~10 per 20 ms batch window),
   since rows of one learner and skill are merged within a batch.

2. **Saturation**: pgbench runs a custom script that writes exactly that mix (the rows
   per attempt of part 1, full batches) into tables shaped like the views (same keys,
   UPSERTs with ON CONFLICT), at increasing client counts; each client is one
   processor worker committing batches. Attempts/s stops growing where this
   PostgreSQL saturates (CPU, or commit latency with synchronous_commit=on).
   pgbench is C, so the client costs little of the machine's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from bench.common import RESULTS_DIR, bench_environment, print_table, write_results
from bench.processors_state import as_consumed
from learnstream import db
from learnstream.settings import Settings, get_settings
from processors.aggregates import AggregatesProcessor
from processors.base import BatchRunner, Processor
from processors.fraud import FraudProcessor
from processors.learner_state import LearnerStateProcessor
from processors.offsets import SourceRecord
from tests.integration.processors.learners import (
    AKT_FILE,
    calibrated_items,
    fitted_parameters,
    read_item_attempts,
    write_parameters,
)

_TABLE_STATS = """
    SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables
"""
# Rows per attempt of these tables drive the pgbench mix (part 2).
SATURATION_TABLES = ("attempts", "skill_mastery", "learner_ability", "review_schedule")


async def _snapshot(settings: Settings) -> tuple[dict[str, tuple[int, int, int]], int]:
    """Per-table (inserted, updated, deleted) counters and the database's commits."""
    conn = await db.connect(settings)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch(_TABLE_STATS)
        commits = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    # Partitioned tables (attempts) count in their partitions: fold them into the parent.
    tables: dict[str, tuple[int, int, int]] = {}
    for row in rows:
        name = re.sub(r"_(p\d+|\d{4}_\d{2}|default)$", "", row["relname"])
        ins, upd, dele = tables.get(name, (0, 0, 0))
        tables[name] = (ins + row["n_tup_ins"], upd + row["n_tup_upd"], dele + row["n_tup_del"])
    return tables, int(commits)


async def count_writes(
    processor: Processor[Any], settings: Settings, records: list[SourceRecord], batch: int
) -> dict[str, Any]:
    """Apply ``records`` with ``processor`` in batches; table row deltas per attempt."""
    before, commits_before = await _snapshot(settings)
    runner = BatchRunner(processor, settings, consumer_group=f"bench.{processor.name}.{batch}")
    await runner.warm_up()
    started = time.perf_counter()
    try:
        for start in range(0, len(records), batch):
            await runner.process(records[start : start + batch])
    finally:
        await runner.close()  # the pool's backends exit and flush their statistics
    seconds = time.perf_counter() - started
    await asyncio.sleep(1.5)
    after, commits_after = await _snapshot(settings)
    per_table = {}
    for table, (ins, upd, dele) in after.items():
        b = before.get(table, (0, 0, 0))
        delta = (ins - b[0], upd - b[1], dele - b[2])
        if any(delta):
            per_table[table] = {
                "inserted": delta[0] / len(records),
                "updated": delta[1] / len(records),
                "deleted": delta[2] / len(records),
            }
    return {
        "tables": per_table,
        "rows_per_attempt": sum(sum(v.values()) for v in per_table.values()),
        "commits_per_attempt": (commits_after - commits_before) / len(records),
        "attempts_per_s": len(records) / seconds,
    }


async def writes_per_event(records_wanted: int) -> dict[str, dict[str, Any]]:
    data = get_settings().dataset_dir
    specs = read_item_attempts(data / AKT_FILE, learners=100, limit=records_wanted)
    results: dict[str, dict[str, Any]] = {}
    for batch in (500, 10):
        async with bench_environment(f"pgcap{batch}", topic_partitions=4) as env:
            settings = env.settings
            records = as_consumed(settings, specs)
            pool = await db.create_pool(settings, max_size=1)
            try:
                await write_parameters(pool, fitted_parameters(specs), calibrated_items(specs))
            finally:
                await pool.close()
            for processor in (
                LearnerStateProcessor(settings),
                FraudProcessor(settings),
                AggregatesProcessor(settings),
            ):
                key = f"{processor.name}, batches of {batch}"
                results[key] = await count_writes(processor, settings, records, batch)
                results[key]["attempts"] = len(records)
    return results


# Tables shaped like the learner views (keys, a few value columns, a version), written
# with the statement kinds the processors use: INSERT ... ON CONFLICT DO NOTHING for
# attempts, UPSERTs for the per-learner rows, one offsets row per batch.
_SCHEMA = """
DROP TABLE IF EXISTS cap_attempts, cap_mastery, cap_ability, cap_reviews, cap_offsets;
CREATE TABLE cap_attempts (tenant_id text, event_id uuid, user_id text, item_id text,
    skill_ids text[], correct boolean, response_time_ms int, occurred_at timestamptz,
    PRIMARY KEY (tenant_id, event_id));
CREATE INDEX ON cap_attempts (tenant_id, user_id, occurred_at);
CREATE TABLE cap_mastery (tenant_id text, user_id text, skill_id text, p_mastery float8,
    attempts int, correct int, updated_at timestamptz, version bigint,
    PRIMARY KEY (tenant_id, user_id, skill_id));
CREATE TABLE cap_ability (tenant_id text, user_id text, theta float8, se float8,
    updated_at timestamptz, version bigint, PRIMARY KEY (tenant_id, user_id));
CREATE TABLE cap_reviews (tenant_id text, user_id text, skill_id text, due_at timestamptz,
    stability float8, difficulty float8, updated_at timestamptz, version bigint,
    PRIMARY KEY (tenant_id, user_id, skill_id));
CREATE TABLE cap_offsets (consumer_group text, topic text, partition int, next_offset bigint,
    updated_at timestamptz, PRIMARY KEY (consumer_group, topic, partition));
INSERT INTO cap_offsets SELECT 'cap', 't', p, 0, now() FROM generate_series(0, 255) p;
"""


def pgbench_script(batch: int, rows: dict[str, float]) -> str:
    """One transaction = one processor batch of ``batch`` attempts with ``rows`` per attempt.

    Learners are drawn from 100,000 (per client stream) and skills from 100, so most
    UPSERTs hit existing rows once the tables warmed up, as in steady state.
    """
    n = {table: max(1, round(batch * rows.get(table, 0.0))) for table in SATURATION_TABLES}
    return f"""\\set p random(0, 255)
\\set base random(1, 100000)
BEGIN;
SELECT next_offset FROM cap_offsets
    WHERE consumer_group = 'cap' AND topic = 't' AND partition = :p FOR UPDATE;
INSERT INTO cap_attempts SELECT 't', gen_random_uuid(), 'u' || ((:base + g) % 100000),
    'i' || (g % 500), ARRAY['s' || (g % 100)], g % 3 > 0, 9000, now()
    FROM generate_series(1, {n["attempts"]}) g ON CONFLICT DO NOTHING;
INSERT INTO cap_mastery
    SELECT 't', 'u' || ((:base + g) % 100000), 's' || (g % 100), 0.5, 1, 1, now(), 1
    FROM generate_series(1, {n["skill_mastery"]}) g
    ON CONFLICT (tenant_id, user_id, skill_id) DO UPDATE SET p_mastery = EXCLUDED.p_mastery,
    attempts = cap_mastery.attempts + 1, correct = cap_mastery.correct + 1,
    updated_at = EXCLUDED.updated_at, version = cap_mastery.version + 1;
INSERT INTO cap_ability SELECT 't', 'u' || ((:base + g) % 100000), 0.1, 0.9, now(), 1
    FROM generate_series(1, {n["learner_ability"]}) g
    ON CONFLICT (tenant_id, user_id) DO UPDATE SET theta = EXCLUDED.theta, se = EXCLUDED.se,
    updated_at = EXCLUDED.updated_at, version = cap_ability.version + 1;
INSERT INTO cap_reviews
    SELECT 't', 'u' || ((:base + g) % 100000), 's' || (g % 100), now(), 2.0, 5.0, now(), 1
    FROM generate_series(1, {n["review_schedule"]}) g
    ON CONFLICT (tenant_id, user_id, skill_id) DO UPDATE SET due_at = EXCLUDED.due_at,
    stability = EXCLUDED.stability, updated_at = EXCLUDED.updated_at,
    version = cap_reviews.version + 1;
UPDATE cap_offsets SET next_offset = next_offset + {batch}, updated_at = now()
    WHERE consumer_group = 'cap' AND topic = 't' AND partition = :p;
COMMIT;
"""


def saturation(
    settings: Settings, rows: dict[str, float], clients: Sequence[int], batch: int, seconds: int
) -> list[dict[str, float]]:
    """pgbench at each client count: batches/s (tps) and attempts/s."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("pgbench not found (Debian: apt-get install postgresql-client)")
    url = urlsplit(settings.database_url)
    env = {
        **os.environ,
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": url.path.lstrip("/"),
    }
    if url.password:
        env["PGPASSWORD"] = url.password
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", _SCHEMA], env=env, check=True)
    results = []
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(pgbench_script(batch, rows))
        script.flush()
        # Warm the tables (most UPSERTs then update), not counted.
        subprocess.run(
            [pgbench, "-n", "-f", script.name, "-c", "4", "-j", "2", "-T", "5"],
            env=env,
            check=True,
            capture_output=True,
        )
        for count in clients:
            out = subprocess.run(
                [
                    pgbench,
                    "-n",
                    "-f",
                    script.name,
                    "-c",
                    str(count),
                    "-j",
                    str(min(count, 4)),
                    "-T",
                    str(seconds),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
            latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
            results.append(
                {
                    "clients": count,
                    "batches_per_s": tps,
                    "attempts_per_s": tps * batch,
                    "batch_latency_ms": latency,
                }
            )
    return results


async def main(
    records_wanted: int, clients: Sequence[int], seconds: int, reuse_counts: bool
) -> None:
    previous = RESULTS_DIR / "postgres_capacity.json"
    if reuse_counts and previous.exists():
        counted = json.loads(previous.read_text())["writes_per_event"]
    else:
        counted = await writes_per_event(records_wanted)
    table_rows = []
    for name, result in counted.items():
        for table, change in sorted(result["tables"].items()):
            table_rows.append(
                [
                    name,
                    table,
                    f"{change['inserted']:.2f}",
                    f"{change['updated']:.2f}",
                    f"{change['deleted']:.2f}",
                ]
            )
        table_rows.append(
            [
                name,
                "= rows / attempt",
                f"{result['rows_per_attempt']:.2f}",
                f"commits/attempt {result['commits_per_attempt']:.3f}",
                "",
            ]
        )
    print_table(
        f"Rows written per attempt ({next(iter(counted.values()))['attempts']} real attempts)",
        ["processor", "table", "inserted", "updated", "deleted"],
        table_rows,
    )
    full = counted["learner_state, batches of 500"]["tables"]
    mix = {t: sum(full.get(t, {}).values()) for t in SATURATION_TABLES}
    load_before = os.getloadavg()[0]
    async with bench_environment("pgcap_saturation") as env:
        curve = await asyncio.to_thread(saturation, env.settings, mix, clients, 500, seconds)
    load_after = os.getloadavg()[0]
    rows_per_attempt = sum(mix.values())
    print_table(
        "One PostgreSQL under the learner_state write mix (batches of 500 attempts; "
        + ", ".join(f"{t} {r:.2f}" for t, r in mix.items())
        + f" rows/attempt; {os.cpu_count()} CPUs, load {load_before:.1f} -> {load_after:.1f})",
        ["clients", "batches/s", "attempts/s", "view rows/s", "batch latency ms"],
        [
            [
                r["clients"],
                round(r["batches_per_s"], 1),
                round(r["attempts_per_s"]),
                round(r["attempts_per_s"] * rows_per_attempt),
                round(r["batch_latency_ms"], 1),
            ]
            for r in curve
        ],
    )
    write_results(
        "postgres_capacity",
        {
            "writes_per_event": counted,
            "saturation_mix": mix,
            "saturation": curve,
            "cpus": os.cpu_count(),
            "load_average": [load_before, load_after],
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--clients", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=int, default=10, help="pgbench run per client count")
    parser.add_argument(
        "--reuse-counts",
        action="store_true",
        help="take the rows per attempt from the last results file (only part 2 runs)",
    )
    arguments = parser.parse_args()
    counts = [int(c) for c in arguments.clients.split(",")]
    asyncio.run(main(arguments.records, counts, arguments.seconds, arguments.reuse_counts))
