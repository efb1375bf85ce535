"""The ``bkt_fit`` DAG fits every skill seen in its window and upserts ``bkt_parameters``;
a re-run of the same interval writes the same rows again (same seed, same data)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc

from learnstream import lake
from tests.integration.dags.conftest import fetch

INTERVAL_END = datetime(2024, 3, 6, tzinfo=UTC)
CONF = {"lookback_days": 30, "restarts": 2, "min_answers": 20, "seed": 0}


def expected_answers(root, start: datetime, end: datetime) -> Counter[tuple[str, str]]:
    """Answers per (tenant, skill) in [start, end): one per distinct event and skill."""
    table = lake.read_attempts(root, start_date=start.date(), end_date=end.date())
    table = table.filter(
        pc.and_(pc.greater_equal(table["occurred_at"], start), pc.less(table["occurred_at"], end))
    )
    seen: set[str] = set()
    counts: Counter[tuple[str, str]] = Counter()
    for row in table.select(["event_id", "tenant_id", "skill_ids"]).to_pylist():
        if row["event_id"] in seen:
            continue
        seen.add(row["event_id"])
        for skill in row["skill_ids"]:
            counts[(row["tenant_id"], skill)] += 1
    return counts


def test_bkt_fit_publishes_each_skill_once_and_reruns_identically(
    run_dag, small_lake, project_settings
) -> None:
    first = run_dag("bkt_fit", INTERVAL_END, CONF)
    assert first.state == "success", first.task_states
    assert first.interval_end == INTERVAL_END
    assert first.interval_start == INTERVAL_END - timedelta(days=1)

    rows = fetch(project_settings, "SELECT * FROM bkt_parameters ORDER BY tenant_id, skill_id")
    answers = expected_answers(small_lake.root, INTERVAL_END - timedelta(days=30), INTERVAL_END)
    wanted = {key: n for key, n in answers.items() if n >= CONF["min_answers"]}
    assert {(r["tenant_id"], r["skill_id"]): r["n_answers"] for r in rows} == wanted
    assert {r["tenant_id"] for r in rows} == set(small_lake.tenants)
    for row in rows:
        assert 0.0 < row["prior"] < 1.0
        assert 0.0 < row["learn"] < 1.0
        # scheduler.bkt's default bounds keep fits non-degenerate.
        assert row["guess"] < 0.5
        assert row["slip"] < 0.5
        assert row["forget"] == 0.0
        assert row["log_likelihood"] < 0.0
        assert row["fitted_at"] == INTERVAL_END
        assert row["fit_run_id"] == first.run_id

    second = run_dag("bkt_fit", INTERVAL_END, CONF)
    assert second.state == "success", second.task_states
    again = fetch(project_settings, "SELECT * FROM bkt_parameters ORDER BY tenant_id, skill_id")
    assert len(again) == len(rows)
    for before, after in zip(rows, again, strict=True):
        for name in ("skill_id", "prior", "learn", "guess", "slip", "n_answers"):
            assert after[name] == before[name]
        assert after["fit_run_id"] == second.run_id
