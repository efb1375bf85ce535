"""Experiments of a tenant (define, start, stop, read out) and recommendation analytics.

The statistics are :mod:`scheduler.experiments` (mSPRT always-valid p-values and a
Beta-binomial read-out); the counts come from views the recommendation-analytics
processor keeps (``experiment_results``, ``recommendation_impressions``). An
experiment is a draft until started; its variants are fixed from then on, because a
learner's variant is a hash of the learner placed on the weights. Starting refuses
while another experiment of the same target runs (409), so a session's strategy
comes from one assignment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from learnstream.db import Queryable
from scheduler.experiments import (
    DEFAULT_ALPHA,
    DEFAULT_TAU,
    ArmCounts,
    ArmResult,
    ExperimentError,
    Variant,
    analyse,
    validate_variants,
    variants_from_json,
)


class Target(StrEnum):
    """What an experiment varies."""

    RECOMMENDATION_STRATEGY = "recommendation_strategy"


class Metric(StrEnum):
    """The per-learner binary outcome an experiment compares (the analysis' x / n)."""

    CLICK = "click"  # opened or answered a recommended item
    COMPLETE = "complete"  # finished, answered, or marked "done" a recommended item
    HELPFUL = "helpful"  # called a recommended item helpful
    MASTERY_GAIN = "mastery_gain"  # mastery of a recommended item's skills rose after it


class Status(StrEnum):
    """An experiment's life: draft -> running -> stopped."""

    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


# What a variant may set for Target.RECOMMENDATION_STRATEGY: a fixed session strategy,
# or "bandit" (the Thompson-sampling choice the processor makes without experiments).
RECOMMENDATION_STRATEGIES = ("bandit", "practice", "review", "mock_test")


@dataclass(frozen=True, slots=True)
class Experiment:
    """One stored experiment; times UTC."""

    experiment_id: str
    name: str
    target: Target
    variants: tuple[Variant, ...]
    target_metric: Metric
    minimum_sample: int
    alpha: float
    tau: float
    status: Status
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None


@dataclass(frozen=True, slots=True)
class Results:
    """The latest look: per arm, control first; ``looks`` 0 before the first."""

    experiment: Experiment
    arms: list[ArmResult]
    looks: int
    looked_at: datetime | None


def _experiment(row: Any) -> Experiment:
    return Experiment(
        experiment_id=str(row["experiment_id"]),
        name=row["name"],
        target=Target(row["target"]),
        variants=variants_from_json(row["variants"]),
        target_metric=Metric(row["target_metric"]),
        minimum_sample=row["minimum_sample"],
        alpha=row["alpha"],
        tau=row["tau"],
        status=Status(row["status"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
    )


async def create(
    db: Queryable,
    *,
    tenant_id: str,
    created_by: str,
    name: str,
    target: Target,
    variants: Sequence[Variant],
    target_metric: Metric,
    minimum_sample: int,
    alpha: float = DEFAULT_ALPHA,
    tau: float = DEFAULT_TAU,
    now: datetime,
) -> Experiment:
    """Store a draft; InvalidInputError (``body.variants``) for unusable variants."""
    try:
        validate_variants(variants)
    except ExperimentError as exc:
        raise InvalidInputError(str(exc), field="body.variants", reason="invalid") from exc
    unknown = sorted({v.strategy for v in variants} - set(RECOMMENDATION_STRATEGIES))
    if unknown:
        raise InvalidInputError(
            f"unknown strategies {unknown}; use one of {list(RECOMMENDATION_STRATEGIES)}",
            field="body.variants",
            reason="unknown strategy",
        )
    row = await db.fetchrow(
        """
        INSERT INTO experiments (tenant_id, experiment_id, name, target, variants,
            target_metric, minimum_sample, alpha, tau, created_by, created_at)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11)
        RETURNING *
        """,
        tenant_id,
        uuid.uuid4(),
        name,
        target.value,
        json.dumps(
            [{"name": v.name, "weight": v.weight, "strategy": v.strategy} for v in variants]
        ),
        target_metric.value,
        minimum_sample,
        alpha,
        tau,
        created_by,
        now,
    )
    return _experiment(row)


async def list_all(db: Queryable, *, tenant_id: str) -> list[Experiment]:
    """The tenant's experiments, newest first."""
    rows = await db.fetch(
        "SELECT * FROM experiments WHERE tenant_id = $1 ORDER BY created_at DESC, experiment_id",
        tenant_id,
    )
    return [_experiment(r) for r in rows]


def _uuid(experiment_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(experiment_id)
    except ValueError:
        raise NotFoundError(
            "no experiment with this id in your tenant",
            field="path.experiment_id",
            reason="not found",
        ) from None


async def get(db: Queryable, *, tenant_id: str, experiment_id: str) -> Experiment:
    """The experiment; NotFoundError (``path.experiment_id``) if the tenant has none such."""
    row = await db.fetchrow(
        "SELECT * FROM experiments WHERE tenant_id = $1 AND experiment_id = $2",
        tenant_id,
        _uuid(experiment_id),
    )
    if row is None:
        raise NotFoundError(
            "no experiment with this id in your tenant",
            field="path.experiment_id",
            reason="not found",
        )
    return _experiment(row)


async def start(db: Queryable, *, tenant_id: str, experiment_id: str, now: datetime) -> Experiment:
    """draft -> running; ConflictError if it is not a draft or another of its target runs."""
    found = await get(db, tenant_id=tenant_id, experiment_id=experiment_id)
    if found.status is not Status.DRAFT:
        raise ConflictError(
            f"the experiment is {found.status.value}; only a draft can start",
            field="path.experiment_id",
            reason=f"is {found.status.value}",
        )
    try:
        row = await db.fetchrow(
            """
            UPDATE experiments SET status = 'running', started_at = $3
            WHERE tenant_id = $1 AND experiment_id = $2 AND status = 'draft'
            RETURNING *
            """,
            tenant_id,
            uuid.UUID(found.experiment_id),
            now,
        )
    except asyncpg.UniqueViolationError:
        raise ConflictError(
            f"another {found.target.value} experiment is running; stop it first",
            field="path.experiment_id",
            reason="another experiment of this target runs",
        ) from None
    if row is None:  # started or stopped by a concurrent request
        raise ConflictError(
            "the experiment is no longer a draft", field="path.experiment_id", reason="changed"
        )
    return _experiment(row)


async def stop(db: Queryable, *, tenant_id: str, experiment_id: str, now: datetime) -> Experiment:
    """running -> stopped (learners go back to the default); ConflictError otherwise."""
    row = await db.fetchrow(
        """
        UPDATE experiments SET status = 'stopped', stopped_at = $3
        WHERE tenant_id = $1 AND experiment_id = $2 AND status = 'running'
        RETURNING *
        """,
        tenant_id,
        _uuid(experiment_id),
        now,
    )
    if row is None:
        found = await get(db, tenant_id=tenant_id, experiment_id=experiment_id)
        raise ConflictError(
            f"the experiment is {found.status.value}; only a running one can stop",
            field="path.experiment_id",
            reason=f"is {found.status.value}",
        )
    return _experiment(row)


async def results(db: Queryable, *, tenant_id: str, experiment_id: str) -> Results:
    """The latest look (what the analytics processor stored), read out per arm."""
    found = await get(db, tenant_id=tenant_id, experiment_id=experiment_id)
    rows = {
        r["variant"]: r
        for r in await db.fetch(
            """
            SELECT variant, exposed, converted, p_value, looks, looked_at
            FROM experiment_results WHERE tenant_id = $1 AND experiment_id = $2
            """,
            tenant_id,
            uuid.UUID(found.experiment_id),
        )
    }
    arms = [
        ArmCounts(v.name, rows[v.name]["exposed"], rows[v.name]["converted"])
        if v.name in rows
        else ArmCounts(v.name, 0, 0)
        for v in found.variants
    ]
    previous = [float(rows[v.name]["p_value"]) if v.name in rows else 1.0 for v in found.variants]
    read_out = analyse(
        arms,
        minimum_sample=found.minimum_sample,
        alpha=found.alpha,
        tau=found.tau,
        previous_p=previous,
    )
    looks = max((r["looks"] for r in rows.values()), default=0)
    looked_at = max((r["looked_at"] for r in rows.values()), default=None)
    return Results(found, read_out, looks, looked_at)


@dataclass(frozen=True, slots=True)
class OutcomeRates:
    """Outcomes of one group of recommendations; rates in [0, 1] (None without data)."""

    group: str  # the strategy, or "<experiment name>: <variant>"
    experiment_id: str | None
    variant: str | None
    recommended: int  # (learner, item) pairs recommended
    click_rate: float | None
    complete_rate: float | None
    helpful_rate: float | None  # helpful / (helpful + not helpful)
    skip_rate: float | None
    mean_mastery_gain: float | None  # mean over recommended pairs, in p_mastery units


_RATES = """
    count(*) AS recommended,
    avg((i.clicked_at IS NOT NULL)::int) AS click_rate,
    avg((i.completed_at IS NOT NULL)::int) AS complete_rate,
    sum((i.helpful_at IS NOT NULL)::int)::float8 / nullif(
        sum((i.helpful_at IS NOT NULL OR i.not_helpful_at IS NOT NULL)::int), 0) AS helpful_rate,
    avg((i.skipped_at IS NOT NULL)::int) AS skip_rate,
    avg(i.mastery_gain) AS mean_mastery_gain
"""


def _rates(row: Any, group: str, experiment_id: str | None, variant: str | None) -> OutcomeRates:
    def rate(name: str) -> float | None:
        return None if row[name] is None else float(row[name])

    return OutcomeRates(
        group,
        experiment_id,
        variant,
        int(row["recommended"]),
        rate("click_rate"),
        rate("complete_rate"),
        rate("helpful_rate"),
        rate("skip_rate"),
        rate("mean_mastery_gain"),
    )


async def recommendation_analytics(
    db: Queryable, *, tenant_id: str, since: datetime | None
) -> tuple[list[OutcomeRates], list[OutcomeRates]]:
    """Outcome rates per session strategy, and per experiment variant (exposed learners'
    recommendations after their first exposure), for items first recommended at or
    after ``since`` (all when None)."""
    by_strategy = await db.fetch(
        f"""
        SELECT i.strategy, {_RATES}
        FROM recommendation_impressions AS i
        WHERE i.tenant_id = $1 AND ($2::timestamptz IS NULL OR i.first_recommended_at >= $2)
        GROUP BY i.strategy ORDER BY i.strategy
        """,
        tenant_id,
        since,
    )
    by_variant = await db.fetch(
        f"""
        SELECT x.experiment_id, x.name, e.variant, {_RATES}
        FROM experiment_exposures AS e
        JOIN experiments AS x USING (tenant_id, experiment_id)
        JOIN recommendation_impressions AS i
          ON i.tenant_id = e.tenant_id AND i.user_id = e.user_id
         AND i.first_recommended_at >= e.first_exposed_at
        WHERE e.tenant_id = $1 AND ($2::timestamptz IS NULL OR i.first_recommended_at >= $2)
        GROUP BY x.experiment_id, x.name, x.created_at, e.variant
        ORDER BY x.created_at DESC, x.experiment_id, e.variant
        """,
        tenant_id,
        since,
    )
    return (
        [_rates(r, r["strategy"], None, None) for r in by_strategy],
        [
            _rates(r, f"{r['name']}: {r['variant']}", str(r["experiment_id"]), r["variant"])
            for r in by_variant
        ],
    )
