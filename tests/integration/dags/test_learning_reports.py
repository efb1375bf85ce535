"""The ``learning_reports`` DAG writes its dashboard tables, and their figures agree
with the lake (cohorts, churn, attempts) and the content catalogue."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from learnstream import db, lake

INTERVAL_END = datetime(2024, 3, 7, tzinfo=UTC)
CONF: dict[str, Any] = {
    "cohort_days": 10,
    "churn_after_days": 2,
    "effectiveness_days": 3,
    "drift_days": 3,
    "min_item_responses": 10,
    "min_attempts": 3,
}


def report(settings, table: str) -> list[dict[str, Any]]:
    path = settings.data_dir / "reports" / table / "interval_end=2024-03-07" / "part-0.parquet"
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def window_attempts(root, days: int) -> list[dict[str, Any]]:
    """Distinct attempts of the ``days`` before the interval end."""
    start = INTERVAL_END - timedelta(days=days)
    table = lake.read_attempts(root, start_date=start.date(), end_date=INTERVAL_END.date())
    table = table.filter(
        pc.and_(
            pc.greater_equal(table["occurred_at"], start),
            pc.less(table["occurred_at"], INTERVAL_END),
        )
    )
    unique: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        unique.setdefault(row["event_id"], row)
    return list(unique.values())


def add_catalogue(settings) -> None:
    """Tenant ``assist``: skill "2" has a published item, skill "catalogue-only" none."""

    async def run() -> None:
        connection = await db.connect(settings)
        try:
            await connection.execute(
                "INSERT INTO tenants (tenant_id, name) VALUES ('assist', 'Assist') "
                "ON CONFLICT DO NOTHING"
            )
            await connection.execute(
                "INSERT INTO skills (tenant_id, skill_id, name) VALUES "
                "('assist', '2', 'Two'), ('assist', 'catalogue-only', 'Untaught') "
                "ON CONFLICT DO NOTHING"
            )
            await connection.execute(
                "INSERT INTO content_items (tenant_id, item_id, kind, status, current_version,"
                " published_version) VALUES ('assist', 'q-2', 'question', 'published', 1, 1)"
                " ON CONFLICT DO NOTHING"
            )
            await connection.execute(
                "INSERT INTO content_versions (tenant_id, item_id, version, title, skill_ids,"
                " payload, search_vector) VALUES ('assist', 'q-2', 1, 'Two', ARRAY['2'],"
                " '{}'::jsonb, to_tsvector('simple', 'Two')) ON CONFLICT DO NOTHING"
            )
        finally:
            await connection.close()

    asyncio.run(run())


def test_learning_reports_agree_with_the_lake(run_dag, small_lake, project_settings) -> None:
    add_catalogue(project_settings)
    result = run_dag("learning_reports", INTERVAL_END, CONF)
    assert result.state == "success", result.task_states

    # Cohorts: learners by first active day in the window; everyone is active on day 0.
    attempts = window_attempts(small_lake.root, CONF["cohort_days"])
    days: dict[tuple[str, str], set[date]] = defaultdict(set)
    for row in attempts:
        days[(row["tenant_id"], row["user_id"])].add(row["occurred_at"].date())
    sizes: dict[tuple[str, date], int] = defaultdict(int)
    churned: dict[tuple[str, date], int] = defaultdict(int)
    line = INTERVAL_END.date() - timedelta(days=1 + CONF["churn_after_days"])
    for (tenant, _), active in days.items():
        sizes[(tenant, min(active))] += 1
        churned[(tenant, min(active))] += max(active) <= line
    retention = report(project_settings, "retention_cohorts")
    assert {(r["tenant_id"], r["cohort_date"]): r["cohort_size"] for r in retention} == dict(sizes)
    assert all(r["retention"] == 1.0 for r in retention if r["day_offset"] == 0)
    churn = report(project_settings, "churn_cohorts")
    assert {(r["tenant_id"], r["cohort_date"]): r["churned"] for r in churn} == dict(churned)

    effectiveness = report(project_settings, "learning_effectiveness")
    recent = window_attempts(small_lake.root, CONF["effectiveness_days"])
    assert sum(r["attempts"] for r in effectiveness) == len(recent)
    for row in effectiveness:
        assert row["practice_hours"] > 0
        assert row["mastery_gained_per_hour"] == row["mastery_gained"] / row["practice_hours"]

    drift = report(project_settings, "item_drift")
    for row in drift:
        moved = abs(row["delta_b"]) > CONF.get("drift_b", 0.5)
        assert row["drifted"] == (moved or abs(row["delta_log_a"]) > 0.4)

    content_window = window_attempts(small_lake.root, CONF["drift_days"])
    tries: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in content_window:
        tries[(row["tenant_id"], row["item_id"])].append(row["correct"])
    never = {
        k for k, flags in tries.items() if len(flags) >= CONF["min_attempts"] and not any(flags)
    }
    assert {
        (r["tenant_id"], r["item_id"]) for r in report(project_settings, "items_never_correct")
    } == never

    practised = {
        skill
        for row in content_window
        if row["tenant_id"] == "assist"
        for skill in row["skill_ids"]
    }
    missing = report(project_settings, "skills_without_content")
    assert {(r["skill_id"], r["source"]) for r in missing} == {("catalogue-only", "catalogue")} | {
        (skill, "attempts") for skill in practised - {"2"}
    }
