"""The ``irt_calibration`` DAG calibrates every item enough learners answered (first
attempts only) and upserts ``irt_item_parameters``; difficulties follow the observed
share of right answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow.compute as pc
from scipy.stats import spearmanr

from learnstream import lake
from tests.integration.dags.conftest import fetch

INTERVAL_END = datetime(2024, 3, 6, tzinfo=UTC)
# min_learner_responses = 1 keeps every learner, so n_responses is simply the number
# of learners who answered the item.
CONF: dict[str, Any] = {
    "lookback_days": 30,
    "min_item_responses": 15,
    "min_learner_responses": 1,
    "model": "2PL",
    "max_iter": 100,
}


def learners_per_item(root, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    table = lake.read_attempts(root, start_date=start.date(), end_date=end.date())
    table = table.filter(
        pc.and_(pc.greater_equal(table["occurred_at"], start), pc.less(table["occurred_at"], end))
    )
    pairs = table.group_by(["tenant_id", "item_id", "user_id"]).aggregate([])
    counted = pairs.group_by(["tenant_id", "item_id"]).aggregate([("user_id", "count")])
    return {(r["tenant_id"], r["item_id"]): r["user_id_count"] for r in counted.to_pylist()}


def test_irt_calibration_publishes_items_with_enough_learners(
    run_dag, small_lake, project_settings
) -> None:
    result = run_dag("irt_calibration", INTERVAL_END, CONF)
    assert result.state == "success", result.task_states

    rows = fetch(project_settings, "SELECT * FROM irt_item_parameters")
    counts = learners_per_item(small_lake.root, INTERVAL_END - timedelta(days=30), INTERVAL_END)
    wanted = {k: n for k, n in counts.items() if n >= CONF["min_item_responses"]}
    assert wanted, "the small lake should have items answered by enough learners"
    assert {(r["tenant_id"], r["item_id"]): r["n_responses"] for r in rows} == wanted
    for row in rows:
        assert row["a"] > 0
        assert row["c"] == 0.0
        assert row["model"] == "2PL"
        assert row["calibrated_at"] == INTERVAL_END
        assert row["calibration_run_id"] == result.run_id

    # Harder items (fewer right first answers) get larger b.
    share_right = first_answer_share_right(small_lake.root, INTERVAL_END)
    assist = [r for r in rows if r["tenant_id"] == "assist"]
    b = np.array([r["b"] for r in assist])
    p = np.array([share_right[r["item_id"]] for r in assist])
    assert spearmanr(b, p).statistic < -0.8


def first_answer_share_right(root, end: datetime) -> dict[str, float]:
    """Share of learners right on their first attempt, per item of tenant ``assist``."""
    table = lake.read_attempts(
        root,
        start_date=(end - timedelta(days=30)).date(),
        end_date=end.date(),
        tenant_ids=["assist"],
    )
    table = table.filter(pc.less(table["occurred_at"], end))
    first: dict[tuple[str, str], tuple[object, bool]] = {}
    for row in table.select(["user_id", "item_id", "occurred_at", "correct"]).to_pylist():
        key = (row["user_id"], row["item_id"])
        if key not in first or row["occurred_at"] < first[key][0]:
            first[key] = (row["occurred_at"], row["correct"])
    right: dict[str, list[bool]] = {}
    for (_, item), (_, correct) in first.items():
        right.setdefault(item, []).append(correct)
    return {item: float(np.mean(flags)) for item, flags in right.items()}
