"""Tables for dashboards: retention and churn, learning effectiveness, content performance.

Each table is one Parquet file per run interval,
``<data_dir>/reports/<table>/interval_end=YYYY-MM-DD/part-0.parquet`` (hive layout, so
``read_parquet('<data_dir>/reports/<table>/**/*.parquet', hive_partitioning = true)``
reads every interval), replaced atomically by a re-run. Attempts come from the lake
with duplicate ``event_id`` rows counted once; days are UTC.

* ``retention_cohorts``: learners grouped by the day of their first attempt in the
  ``cohort_days`` before the interval end; for each later day, how many were active.
* ``churn_cohorts``: per cohort, learners with no attempt in the last
  ``churn_after_days`` of the window (``churn_observable`` is false for cohorts younger
  than that, whose learners cannot have churned yet).
* ``learning_effectiveness``: per tenant and attempt context (practice, review, quiz,
  ...), BKT mastery gained per hour practised. Each (learner, skill) is traced with
  :func:`scheduler.bkt.update` from the skill's prior at its first answer in the
  window, using the published ``bkt_parameters`` (defaults when a skill has none); an
  answer's gain is the change of P(mastered) it caused, so a skill's gains add up to
  its final P(mastered) minus its prior. Time practised is ``response_time_ms`` when
  known, else the gap to the learner's next attempt capped at ``max_gap_s``. The lake
  carries no session strategy or experiment variant yet (session events are not in
  the lake), so context is the only split.
* ``item_drift``: items calibrated (2PL, :mod:`ml.jobs.irt_calibration`) on the last
  ``drift_days`` and on the ``drift_days`` before them; ``drifted`` when difficulty
  moved more than ``drift_b`` logits or log-discrimination more than ``drift_log_a``.
* ``items_never_correct``: items with at least ``min_attempts`` attempts, none right.
* ``skills_without_content``: catalogue skills (PostgreSQL ``skills``) that no
  published item teaches (``source = 'catalogue'``), and skills learners answered in
  the window that no published item of their tenant carries (``source = 'attempts'``,
  for tenants that have a catalogue).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from learnstream import lake
from learnstream.settings import Settings
from learnstream.views import calibration
from ml.jobs.common import (
    REPORTS_FOLDER,
    Interval,
    first_per_event,
    output_dir,
    read_interval_attempts,
    with_connection,
)
from ml.jobs.irt_calibration import COLUMNS as IRT_COLUMNS
from ml.jobs.irt_calibration import CalibrationOptions, calibrate_attempts
from scheduler import bkt

log = logging.getLogger(__name__)

REPORT_FILE = "part-0.parquet"


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """Windows and thresholds of the reports."""

    cohort_days: int = 56
    churn_after_days: int = 14
    effectiveness_days: int = 7
    max_gap_s: float = 300.0  # longest pause counted as practice when time is unknown
    drift_days: int = 28
    drift_b: float = 0.5  # logits
    drift_log_a: float = 0.4  # about a 50 % change of discrimination
    min_item_responses: int = 20  # for calibrating drift
    min_attempts: int = 10  # for "nobody gets it right"


def report_path(settings: Settings, table: str, interval: Interval) -> Path:
    """The file of one report table for one interval."""
    return output_dir(settings, REPORTS_FOLDER, table, interval) / REPORT_FILE


def _write(settings: Settings, name: str, interval: Interval, table: pa.Table) -> str:
    target = report_path(settings, name, interval)
    lake.write_table_atomically(table, target)
    return str(target)


# --- retention and churn ---------------------------------------------------------------

RETENTION_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("cohort_date", pa.date32()),
        ("day_offset", pa.int64()),  # days after the cohort day, >= 0
        ("cohort_size", pa.int64()),
        ("active_learners", pa.int64()),
        ("retention", pa.float64()),  # active / cohort size, in [0, 1]
    ]
)
CHURN_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("cohort_date", pa.date32()),
        ("cohort_size", pa.int64()),
        ("churned", pa.int64()),
        ("churn_rate", pa.float64()),  # in [0, 1]
        ("churn_observable", pa.bool_()),
    ]
)


def cohort_tables(
    attempts: pa.Table, window: Interval, churn_after_days: int
) -> tuple[pa.Table, pa.Table]:
    """Retention and churn tables from attempts (``tenant_id``, ``user_id``, ``occurred_at``)."""
    days = pa.table(
        {
            "tenant_id": attempts["tenant_id"],
            "user_id": attempts["user_id"],
            "day": pc.cast(attempts["occurred_at"], pa.date32()),
        }
    )
    active = days.group_by(["tenant_id", "user_id", "day"]).aggregate([])
    span = active.group_by(["tenant_id", "user_id"]).aggregate([("day", "min"), ("day", "max")])
    learners: dict[tuple[str, str], tuple[Any, Any]] = {
        (r["tenant_id"], r["user_id"]): (r["day_min"], r["day_max"]) for r in span.to_pylist()
    }
    cohort_size: dict[tuple[str, Any], int] = defaultdict(int)
    churned: dict[tuple[str, Any], int] = defaultdict(int)
    churn_line = window.last_date - timedelta(days=churn_after_days)
    for (tenant, _), (first, last) in learners.items():
        cohort_size[(tenant, first)] += 1
        churned[(tenant, first)] += int(last <= churn_line)
    retained: dict[tuple[str, Any, int], int] = defaultdict(int)
    for row in active.to_pylist():
        first, _ = learners[(row["tenant_id"], row["user_id"])]
        retained[(row["tenant_id"], first, (row["day"] - first).days)] += 1
    retention = [
        {
            "tenant_id": tenant,
            "cohort_date": first,
            "day_offset": offset,
            "cohort_size": cohort_size[(tenant, first)],
            "active_learners": count,
            "retention": count / cohort_size[(tenant, first)],
        }
        for (tenant, first, offset), count in sorted(retained.items())
    ]
    churn = [
        {
            "tenant_id": tenant,
            "cohort_date": first,
            "cohort_size": size,
            "churned": churned[(tenant, first)],
            "churn_rate": churned[(tenant, first)] / size,
            "churn_observable": first <= churn_line,
        }
        for (tenant, first), size in sorted(cohort_size.items())
    ]
    return (
        pa.Table.from_pylist(retention, schema=RETENTION_SCHEMA),
        pa.Table.from_pylist(churn, schema=CHURN_SCHEMA),
    )


def write_cohort_reports(
    settings: Settings, interval: Interval, options: ReportOptions = ReportOptions()
) -> dict[str, Any]:
    """Write ``retention_cohorts`` and ``churn_cohorts`` for the interval."""
    window = interval.lookback(options.cohort_days)
    attempts = first_per_event(
        read_interval_attempts(
            settings,
            window,
            ["event_id", "tenant_id", "user_id", "kafka_partition", "kafka_offset"],
        )
    )
    retention, churn = cohort_tables(attempts, window, options.churn_after_days)
    return {
        "retention_cohorts": _write(settings, "retention_cohorts", interval, retention),
        "churn_cohorts": _write(settings, "churn_cohorts", interval, churn),
        "cohorts": churn.num_rows,
        "learners": int(pc.sum(churn["cohort_size"]).as_py() or 0),
    }


# --- learning effectiveness ----------------------------------------------------------------

EFFECTIVENESS_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("context", pa.string()),
        ("learners", pa.int64()),
        ("attempts", pa.int64()),
        ("practice_hours", pa.float64()),
        ("mastery_gained", pa.float64()),  # sum of P(mastered) changes, in skills
        ("mastery_gained_per_hour", pa.float64()),  # null when no time was practised
    ]
)
_EFFECTIVENESS_COLUMNS = [
    "event_id",
    "tenant_id",
    "user_id",
    "occurred_at",
    "kafka_partition",
    "kafka_offset",
    "skill_ids",
    "correct",
    "score",
    "response_time_ms",
    "context",
]


def effectiveness_table(
    attempts: pa.Table,
    parameters: dict[tuple[str, str], bkt.BKTParams],
    max_gap_s: float,
) -> pa.Table:
    """Mastery gained per hour practised, per tenant and context (see the module docstring).

    ``parameters`` maps (tenant, skill) to BKT parameters; others use the defaults.
    """
    ordered = attempts.sort_by(
        [
            ("tenant_id", "ascending"),
            ("user_id", "ascending"),
            ("occurred_at", "ascending"),
            ("kafka_partition", "ascending"),
            ("kafka_offset", "ascending"),
        ]
    ).to_pylist()
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    gained: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    learners: dict[tuple[str, str], set[str]] = defaultdict(set)
    mastery: dict[tuple[str, str, str], float] = {}
    for index, row in enumerate(ordered):
        tenant, user = row["tenant_id"], row["user_id"]
        key = (tenant, row["context"] or "UNSPECIFIED")
        counts[key] += 1
        learners[key].add(user)
        if row["response_time_ms"] is not None:
            seconds[key] += max(row["response_time_ms"], 0) / 1000.0
        elif index + 1 < len(ordered) and ordered[index + 1]["user_id"] == user:
            gap = (ordered[index + 1]["occurred_at"] - row["occurred_at"]).total_seconds()
            seconds[key] += min(max(gap, 0.0), max_gap_s)
        score = row["score"] if row["score"] is not None else float(row["correct"])
        for skill in row["skill_ids"]:
            params = parameters.get((tenant, skill), bkt.DEFAULT_PARAMS)
            before = mastery.get((tenant, user, skill), params.prior)
            after = bkt.update(before, score, params)
            mastery[(tenant, user, skill)] = after
            gained[key] += after - before
    rows = []
    for key in sorted(counts):
        hours = seconds[key] / 3600.0
        rows.append(
            {
                "tenant_id": key[0],
                "context": key[1],
                "learners": len(learners[key]),
                "attempts": counts[key],
                "practice_hours": hours,
                "mastery_gained": gained[key],
                "mastery_gained_per_hour": gained[key] / hours if hours > 0 else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=EFFECTIVENESS_SCHEMA)


async def _bkt_parameters(connection: asyncpg.Connection) -> dict[tuple[str, str], bkt.BKTParams]:
    return await calibration.load_all_bkt(connection)


def write_effectiveness_report(
    settings: Settings, interval: Interval, options: ReportOptions = ReportOptions()
) -> dict[str, Any]:
    """Write ``learning_effectiveness`` for the last ``effectiveness_days`` of the interval."""
    window = interval.lookback(options.effectiveness_days)
    attempts = first_per_event(read_interval_attempts(settings, window, _EFFECTIVENESS_COLUMNS))
    parameters = with_connection(settings, _bkt_parameters)
    table = effectiveness_table(attempts, parameters, options.max_gap_s)
    return {
        "learning_effectiveness": _write(settings, "learning_effectiveness", interval, table),
        "groups": table.num_rows,
        "attempts": attempts.num_rows,
    }


# --- content performance --------------------------------------------------------------------

DRIFT_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("item_id", pa.string()),
        ("a_before", pa.float64()),
        ("b_before", pa.float64()),
        ("a_now", pa.float64()),
        ("b_now", pa.float64()),
        ("delta_b", pa.float64()),  # logits
        ("delta_log_a", pa.float64()),
        ("n_responses_before", pa.int64()),
        ("n_responses_now", pa.int64()),
        ("drifted", pa.bool_()),
    ]
)
NEVER_CORRECT_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("item_id", pa.string()),
        ("attempts", pa.int64()),
        ("learners", pa.int64()),
    ]
)
NO_CONTENT_SCHEMA = pa.schema(
    [("tenant_id", pa.string()), ("skill_id", pa.string()), ("source", pa.string())]
)


def drift_table(before: pa.Table, now: pa.Table, options: ReportOptions) -> pa.Table:
    """Items calibrated in both windows, with how far their parameters moved."""
    earlier = {(r["tenant_id"], r["item_id"]): r for r in before.to_pylist()}
    rows = []
    for row in now.to_pylist():
        old = earlier.get((row["tenant_id"], row["item_id"]))
        if old is None:
            continue
        delta_b = row["b"] - old["b"]
        delta_log_a = float(np.log(row["a"]) - np.log(old["a"]))
        rows.append(
            {
                "tenant_id": row["tenant_id"],
                "item_id": row["item_id"],
                "a_before": old["a"],
                "b_before": old["b"],
                "a_now": row["a"],
                "b_now": row["b"],
                "delta_b": delta_b,
                "delta_log_a": delta_log_a,
                "n_responses_before": old["n_responses"],
                "n_responses_now": row["n_responses"],
                "drifted": abs(delta_b) > options.drift_b or abs(delta_log_a) > options.drift_log_a,
            }
        )
    return pa.Table.from_pylist(rows, schema=DRIFT_SCHEMA)


def never_correct_table(attempts: pa.Table, min_attempts: int) -> pa.Table:
    """Items with at least ``min_attempts`` attempts and not one of them correct."""
    if attempts.num_rows == 0:
        return NEVER_CORRECT_SCHEMA.empty_table()
    counted = (
        pa.table(
            {
                "tenant_id": attempts["tenant_id"],
                "item_id": attempts["item_id"],
                "user_id": attempts["user_id"],
                "right": pc.cast(attempts["correct"], pa.int64()),
            }
        )
        .group_by(["tenant_id", "item_id"])
        .aggregate([("right", "sum"), ("right", "count"), ("user_id", "count_distinct")])
    )
    selected = counted.filter(
        pc.and_(
            pc.equal(counted["right_sum"], 0),
            pc.greater_equal(counted["right_count"], min_attempts),
        )
    )
    return pa.table(
        {
            "tenant_id": selected["tenant_id"],
            "item_id": selected["item_id"],
            "attempts": selected["right_count"],
            "learners": selected["user_id_count_distinct"],
        },
        schema=NEVER_CORRECT_SCHEMA,
    ).sort_by([("tenant_id", "ascending"), ("item_id", "ascending")])


async def _catalogue(
    connection: asyncpg.Connection,
) -> tuple[list[tuple[str, str]], set[str], set[tuple[str, str]]]:
    """(catalogue skills without published content, tenants with a catalogue, taught skills)."""
    missing = await connection.fetch(
        """
        SELECT s.tenant_id, s.skill_id FROM skills s
        WHERE NOT EXISTS (
            SELECT 1 FROM published_content p
            WHERE p.tenant_id = s.tenant_id AND s.skill_id = ANY (p.skill_ids))
        ORDER BY s.tenant_id, s.skill_id
        """
    )
    tenants = await connection.fetch("SELECT DISTINCT tenant_id FROM skills")
    taught = await connection.fetch(
        "SELECT DISTINCT tenant_id, unnest(skill_ids) AS skill_id FROM published_content"
    )
    return (
        [(r["tenant_id"], r["skill_id"]) for r in missing],
        {r["tenant_id"] for r in tenants},
        {(r["tenant_id"], r["skill_id"]) for r in taught},
    )


def write_content_reports(
    settings: Settings, interval: Interval, options: ReportOptions = ReportOptions()
) -> dict[str, Any]:
    """Write ``item_drift``, ``items_never_correct`` and ``skills_without_content``."""
    window = interval.lookback(options.drift_days)
    columns = sorted({*IRT_COLUMNS, "skill_ids"})
    now = read_interval_attempts(settings, window, columns)
    before = read_interval_attempts(settings, window.shifted(-options.drift_days), columns)
    calibration = CalibrationOptions(min_item_responses=options.min_item_responses)
    drift = drift_table(
        calibrate_attempts(before, calibration), calibrate_attempts(now, calibration), options
    )
    now = first_per_event(now)
    never_correct = never_correct_table(now, options.min_attempts)

    missing, catalogued_tenants, taught = with_connection(settings, _catalogue)
    rows = [{"tenant_id": t, "skill_id": s, "source": "catalogue"} for t, s in missing]
    # One (tenant, skill) per skill of every attempt: list_parent_indices repeats the
    # attempt's tenant once per skill it carries.
    practised = {
        (str(tenant), str(skill))
        for tenant, skill in zip(
            pc.take(now["tenant_id"], pc.list_parent_indices(now["skill_ids"])).to_pylist(),
            pc.list_flatten(now["skill_ids"]).to_pylist(),
            strict=True,
        )
    }
    for tenant, skill in sorted(practised):
        if tenant in catalogued_tenants and (tenant, skill) not in taught:
            rows.append({"tenant_id": tenant, "skill_id": skill, "source": "attempts"})
    no_content = pa.Table.from_pylist(rows, schema=NO_CONTENT_SCHEMA)
    return {
        "item_drift": _write(settings, "item_drift", interval, drift),
        "items_never_correct": _write(settings, "items_never_correct", interval, never_correct),
        "skills_without_content": _write(settings, "skills_without_content", interval, no_content),
        "drifted_items": int(pc.sum(drift["drifted"]).as_py() or 0) if drift.num_rows else 0,
        "compared_items": drift.num_rows,
        "never_correct_items": never_correct.num_rows,
        "skills_without_content_count": no_content.num_rows,
    }
