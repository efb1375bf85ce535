"""IRT item parameters recalibrated from the lake, published for the stream processors.

Two steps (two DAG tasks): :func:`calibrate_item_parameters` builds each tenant's
learners × items matrix from the attempts of the ``lookback_days`` before the run's
interval end and calibrates it with :func:`scheduler.irt.calibrate` (Bock–Aitkin
MML-EM); :func:`publish_item_parameters` upserts the result into PostgreSQL's
``irt_item_parameters`` (migration 0020), which the learner-state processor reads.

Only a learner's *first* attempt at an item enters the matrix: IRT models one response
per person and item, and later attempts measure what was learnt in between. Items
answered by fewer than ``min_item_responses`` learners are left out (they keep their
previous parameters) and so are learners with fewer than ``min_learner_responses``
answers on the remaining items.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from learnstream import lake
from learnstream.settings import Settings
from ml.jobs.common import (
    JOBS_FOLDER,
    Interval,
    first_per_event,
    output_dir,
    read_interval_attempts,
    with_connection,
)
from scheduler import irt

log = logging.getLogger(__name__)

JOB = "irt_calibration"
PARAMETERS_FILE = "irt_item_parameters.parquet"
COLUMNS = (
    "event_id",
    "tenant_id",
    "user_id",
    "item_id",
    "correct",
    "occurred_at",
    "kafka_partition",
    "kafka_offset",
)
PARAMETER_SCHEMA = pa.schema(
    [
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("a", pa.float64(), nullable=False),  # discrimination > 0
        pa.field("b", pa.float64(), nullable=False),  # difficulty, logits
        pa.field("c", pa.float64(), nullable=False),  # guessing floor in [0, 1)
        pa.field("model", pa.string(), nullable=False),
        pa.field("n_responses", pa.int64(), nullable=False),
        pa.field("p_correct", pa.float64(), nullable=False),  # observed share correct
        pa.field("converged", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class CalibrationOptions:
    """Window, IRT model and the least data an item or a learner needs."""

    lookback_days: float = 90.0
    model: irt.Model = "2PL"
    min_item_responses: int = 20
    min_learner_responses: int = 2
    max_items: int = 2000  # most-answered items per tenant; bounds the dense matrix
    max_iter: int = 200


@dataclass(frozen=True, slots=True)
class ResponseMatrix:
    """First answers as learners × items: 1 correct, 0 wrong, NaN not answered."""

    learners: tuple[str, ...]
    items: tuple[str, ...]
    responses: npt.NDArray[np.float64]


def response_matrix(table: pa.Table, options: CalibrationOptions) -> ResponseMatrix:
    """One tenant's attempts (columns :data:`COLUMNS`) → the first-answer matrix.

    Items need ``min_item_responses`` learners and learners ``min_learner_responses``
    answers on the kept items; the filter is applied once each way, items first.
    """
    table = first_per_event(table)
    if table.num_rows == 0:
        return ResponseMatrix((), (), np.zeros((0, 0)))
    table = table.sort_by(
        [
            ("user_id", "ascending"),
            ("item_id", "ascending"),
            ("occurred_at", "ascending"),
            ("kafka_partition", "ascending"),
            ("kafka_offset", "ascending"),
        ]
    )
    users = np.asarray(table["user_id"].to_pylist(), dtype=object)
    items = np.asarray(table["item_id"].to_pylist(), dtype=object)
    correct = np.asarray(table["correct"].to_pylist(), dtype=np.float64)
    # Sorted by (user, item, time): a pair's first attempt is where the pair changes.
    first = np.ones(len(users), dtype=np.bool_)
    first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    users, items, correct = users[first], items[first], correct[first]

    item_ids, item_index, item_counts = np.unique(items, return_inverse=True, return_counts=True)
    enough = item_counts >= options.min_item_responses
    if enough.sum() > options.max_items:
        # Most answered first; ties by id so the choice is deterministic.
        order = sorted(np.flatnonzero(enough), key=lambda i: (-item_counts[i], item_ids[i]))
        enough = np.zeros_like(enough)
        enough[order[: options.max_items]] = True
    kept = enough[item_index]
    users, items, correct = users[kept], items[kept], correct[kept]

    _, user_index, user_counts = np.unique(users, return_inverse=True, return_counts=True)
    kept = (user_counts >= options.min_learner_responses)[user_index]
    users, items, correct = users[kept], items[kept], correct[kept]
    if len(users) == 0:
        return ResponseMatrix((), (), np.zeros((0, 0)))
    learner_ids, row = np.unique(users, return_inverse=True)
    kept_items, column = np.unique(items, return_inverse=True)
    matrix = np.full((len(learner_ids), len(kept_items)), np.nan)
    matrix[row, column] = correct
    return ResponseMatrix(
        tuple(str(u) for u in learner_ids), tuple(str(i) for i in kept_items), matrix
    )


def calibrate_tenant(
    tenant_id: str, table: pa.Table, options: CalibrationOptions
) -> list[dict[str, Any]]:
    """Calibrate one tenant's attempts; one row per item with enough responses."""
    matrix = response_matrix(table, options)
    if not matrix.items:
        return []
    result = irt.calibrate(matrix.responses, model=options.model, max_iter=options.max_iter)
    observed = ~np.isnan(matrix.responses)
    answered = observed.sum(axis=0)
    right = np.nansum(matrix.responses, axis=0)
    return [
        {
            "tenant_id": tenant_id,
            "item_id": item_id,
            "a": float(result.bank.a[j]),
            "b": float(result.bank.b[j]),
            "c": float(result.bank.c[j]),
            "model": options.model,
            "n_responses": int(answered[j]),
            "p_correct": float(right[j] / answered[j]),
            "converged": result.converged,
        }
        for j, item_id in enumerate(matrix.items)
    ]


def calibrate_attempts(table: pa.Table, options: CalibrationOptions) -> pa.Table:
    """Every tenant's items calibrated from these attempts, as :data:`PARAMETER_SCHEMA` rows."""
    rows: list[dict[str, Any]] = []
    tenants = sorted(pc.unique(table["tenant_id"]).to_pylist()) if table.num_rows else []
    for tenant_id in tenants:
        tenant_rows = table.filter(pc.equal(table["tenant_id"], tenant_id))
        rows.extend(calibrate_tenant(str(tenant_id), tenant_rows, options))
    return pa.Table.from_pylist(rows, schema=PARAMETER_SCHEMA)


def parameters_path(settings: Settings, interval: Interval) -> Path:
    """Where the run of ``interval`` leaves its calibrated items."""
    return output_dir(settings, JOBS_FOLDER, JOB, interval) / PARAMETERS_FILE


def calibrate_item_parameters(
    settings: Settings, interval: Interval, options: CalibrationOptions = CalibrationOptions()
) -> dict[str, Any]:
    """Calibrate the lookback window's items; write the run's Parquet file.

    Returns ``{"path", "items", "tenants", "responses", "window"}``.
    """
    window = interval.lookback(options.lookback_days)
    table = read_interval_attempts(settings, window, COLUMNS)
    calibrated = calibrate_attempts(table, options)
    target = parameters_path(settings, interval)
    lake.write_table_atomically(calibrated, target)
    tenants = len(pc.unique(calibrated["tenant_id"])) if calibrated.num_rows else 0
    log.info("IRT calibration %s: %d items", window.to_dict(), calibrated.num_rows)
    return {
        "path": str(target),
        "items": calibrated.num_rows,
        "tenants": tenants,
        "responses": int(pc.sum(calibrated["n_responses"]).as_py() or 0),
        "window": window.to_dict(),
    }


_UPSERT = """
INSERT INTO irt_item_parameters (tenant_id, item_id, a, b, c, model, n_responses,
                                 calibrated_at, calibration_run_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (tenant_id, item_id) DO UPDATE SET
    a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c, model = EXCLUDED.model,
    n_responses = EXCLUDED.n_responses, calibrated_at = EXCLUDED.calibrated_at,
    calibration_run_id = EXCLUDED.calibration_run_id
"""


def publish_item_parameters(settings: Settings, interval: Interval, run_id: str) -> int:
    """Upsert the run's calibrated items into ``irt_item_parameters`` in one transaction.

    ``calibrated_at`` is the interval's end, ``calibration_run_id`` the Airflow run;
    items absent from the file keep their rows. Returns the rows written.
    """
    rows = pq.read_table(parameters_path(settings, interval)).to_pylist()
    values = [
        (
            r["tenant_id"],
            r["item_id"],
            r["a"],
            r["b"],
            r["c"],
            r["model"],
            r["n_responses"],
            interval.end,
            run_id,
        )
        for r in rows
    ]

    async def upsert(connection: asyncpg.Connection) -> int:
        async with connection.transaction():
            await connection.executemany(_UPSERT, values)
        return len(values)

    return with_connection(settings, upsert)
