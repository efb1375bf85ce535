"""Per-skill BKT parameters fitted by EM on the lake, published for the stream processors.

Two steps (two DAG tasks): :func:`fit_bkt_parameters` reads the attempts of the
``lookback_days`` before the run's interval end, fits every tenant's skills with
:func:`scheduler.bkt.fit_em` and writes ``bkt_parameters.parquet`` into the run's
output partition; :func:`publish_bkt_parameters` upserts that file into PostgreSQL's
``bkt_parameters`` (migration 0020), which the learner-state processor reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from learnstream import lake
from learnstream.settings import Settings
from ml.datasets import build_vocabulary, encode, lake_raw_sequences
from ml.jobs.common import (
    JOBS_FOLDER,
    Interval,
    output_dir,
    read_interval_attempts,
    with_connection,
)
from scheduler import bkt

log = logging.getLogger(__name__)

JOB = "bkt_fit"
PARAMETERS_FILE = "bkt_parameters.parquet"
_COLUMNS = (
    "event_id",
    "tenant_id",
    "user_id",
    "occurred_at",
    "kafka_partition",
    "kafka_offset",
    "item_id",
    "skill_ids",
    "correct",
)
PARAMETER_SCHEMA = pa.schema(
    [
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("skill_id", pa.string(), nullable=False),
        *(pa.field(name, pa.float64(), nullable=False) for name in bkt.PARAM_NAMES),
        pa.field("n_answers", pa.int64(), nullable=False),
        pa.field("log_likelihood", pa.float64(), nullable=False),  # nats
        pa.field("converged", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class BKTFitOptions:
    """How to fit: the window, EM restarts, forgetting, and the least data a skill needs."""

    lookback_days: float = 90.0
    restarts: int = 5
    forgets: bool = False
    min_answers: int = 20  # skills with fewer answers keep their previous parameters
    seed: int = 0


def fit_tenant(table: pa.Table, options: BKTFitOptions) -> list[dict[str, Any]]:
    """Fit one tenant's attempts (lake rows); one row per skill with enough answers.

    An attempt tagged with several skills is an opportunity for each of them; a
    duplicated ``event_id`` counts once (see :func:`ml.datasets.lake_raw_sequences`).
    """
    raw = lake_raw_sequences(table)
    if not raw:
        return []
    vocabulary = build_vocabulary(raw)
    sequences = encode(raw, vocabulary)
    skills = np.concatenate([s.skills for s in sequences])
    correct = np.concatenate([s.correct for s in sequences])
    learner = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    grouped = bkt.build_sequences(skills, learner, correct, n_skills=len(vocabulary))
    fit = bkt.fit_em(
        grouped,
        np.random.default_rng(options.seed),
        restarts=options.restarts,
        forgets=options.forgets,
    )
    tenant_id = str(table["tenant_id"][0].as_py())
    rows: list[dict[str, Any]] = []
    for skill_id, skill_fit in zip(vocabulary, fit.skills, strict=True):
        if skill_fit.n_answers < options.min_answers:
            continue
        rows.append(
            {
                "tenant_id": tenant_id,
                "skill_id": skill_id,
                **{name: getattr(skill_fit.params, name) for name in bkt.PARAM_NAMES},
                "n_answers": skill_fit.n_answers,
                "log_likelihood": skill_fit.log_likelihood,
                "converged": skill_fit.converged,
            }
        )
    return rows


def parameters_path(settings: Settings, interval: Interval) -> Path:
    """Where the run of ``interval`` leaves its fitted parameters."""
    return output_dir(settings, JOBS_FOLDER, JOB, interval) / PARAMETERS_FILE


def fit_bkt_parameters(
    settings: Settings, interval: Interval, options: BKTFitOptions = BKTFitOptions()
) -> dict[str, Any]:
    """Fit every tenant's skills on the lookback window; write the run's Parquet file.

    Returns ``{"path", "tenants", "skills", "answers", "window"}``. With no attempts in
    the window the file holds no rows (publishing it changes nothing).
    """
    window = interval.lookback(options.lookback_days)
    table = read_interval_attempts(settings, window, _COLUMNS)
    rows: list[dict[str, Any]] = []
    tenants = sorted(pc.unique(table["tenant_id"]).to_pylist()) if table.num_rows else []
    for tenant_id in tenants:
        rows.extend(fit_tenant(table.filter(pc.equal(table["tenant_id"], tenant_id)), options))
    fitted = pa.Table.from_pylist(rows, schema=PARAMETER_SCHEMA)
    target = parameters_path(settings, interval)
    lake.write_table_atomically(fitted, target)
    log.info("BKT fit %s: %d skills of %d tenants", window.to_dict(), len(rows), len(tenants))
    return {
        "path": str(target),
        "tenants": len(tenants),
        "skills": len(rows),
        "answers": int(sum(r["n_answers"] for r in rows)),
        "window": window.to_dict(),
    }


_UPSERT = """
INSERT INTO bkt_parameters (tenant_id, skill_id, prior, learn, guess, slip, forget,
                            n_answers, log_likelihood, fitted_at, fit_run_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (tenant_id, skill_id) DO UPDATE SET
    prior = EXCLUDED.prior, learn = EXCLUDED.learn, guess = EXCLUDED.guess,
    slip = EXCLUDED.slip, forget = EXCLUDED.forget, n_answers = EXCLUDED.n_answers,
    log_likelihood = EXCLUDED.log_likelihood, fitted_at = EXCLUDED.fitted_at,
    fit_run_id = EXCLUDED.fit_run_id
"""


def publish_bkt_parameters(settings: Settings, interval: Interval, run_id: str) -> int:
    """Upsert the run's fitted parameters into ``bkt_parameters`` in one transaction.

    ``fitted_at`` is the interval's end (not the clock), ``fit_run_id`` the Airflow run;
    skills absent from the file keep their rows. Returns the rows written.
    """
    rows = pq.read_table(parameters_path(settings, interval)).to_pylist()
    values = [
        (
            r["tenant_id"],
            r["skill_id"],
            *(r[name] for name in bkt.PARAM_NAMES),
            r["n_answers"],
            r["log_likelihood"],
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
