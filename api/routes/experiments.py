"""Experiments (admins) and recommendation analytics (teachers, admins).

See docs/experiments.md: variants are assigned by a hash of the learner, the
recommendations processor applies them, and the read-out is an mSPRT always-valid
p-value per variant against the control (safe to read at any time).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path, Query, status

from api.deps import AdminUser, Now, PoolDep, TeacherOrAdmin
from api.schemas.experiments import (
    ArmPublic,
    ExperimentCreate,
    ExperimentPublic,
    OutcomeRatesPublic,
    RecommendationAnalyticsPublic,
    ResultsPublic,
    VariantSpec,
)
from api.services import experiments
from scheduler.experiments import Variant

router = APIRouter(tags=["experiments"])

SinceQuery = Query(default=None, description="only items first recommended at or after this time")
ExperimentIdPath = Path(min_length=1, max_length=100, description="The experiment's id (UUID)")


METHOD = (
    "mSPRT always-valid p-values (Johari, Koomen, Pekelis & Walsh 2022), "
    "Beta(1, 1)-binomial posterior read-out"
)


def _public(found: experiments.Experiment) -> ExperimentPublic:
    return ExperimentPublic(
        experiment_id=found.experiment_id,
        name=found.name,
        target=found.target,
        variants=[
            VariantSpec(name=v.name, weight=v.weight, strategy=v.strategy) for v in found.variants
        ],
        target_metric=found.target_metric,
        minimum_sample=found.minimum_sample,
        alpha=found.alpha,
        tau=found.tau,
        status=found.status,
        created_at=found.created_at,
        started_at=found.started_at,
        stopped_at=found.stopped_at,
    )


@router.post(
    "/v1/experiments", status_code=status.HTTP_201_CREATED, summary="Define an experiment (admin)"
)
async def create_experiment(
    body: ExperimentCreate, admin: AdminUser, pool: PoolDep, now: Now
) -> ExperimentPublic:
    """A draft; 422 naming ``body.variants`` for duplicate names or unknown strategies."""
    created = await experiments.create(
        pool,
        tenant_id=admin.tenant_id,
        created_by=admin.subject_id,
        name=body.name,
        target=body.target,
        variants=[Variant(v.name, v.weight, v.strategy) for v in body.variants],
        target_metric=body.target_metric,
        minimum_sample=body.minimum_sample,
        alpha=body.alpha,
        tau=body.tau,
        now=now,
    )
    return _public(created)


@router.get("/v1/experiments", summary="The tenant's experiments, newest first (admin)")
async def list_experiments(admin: AdminUser, pool: PoolDep) -> list[ExperimentPublic]:
    return [_public(e) for e in await experiments.list_all(pool, tenant_id=admin.tenant_id)]


@router.get("/v1/experiments/{experiment_id}", summary="One experiment (admin)")
async def get_experiment(
    admin: AdminUser, pool: PoolDep, experiment_id: str = ExperimentIdPath
) -> ExperimentPublic:
    found = await experiments.get(pool, tenant_id=admin.tenant_id, experiment_id=experiment_id)
    return _public(found)


@router.post("/v1/experiments/{experiment_id}/start", summary="Start a draft (admin)")
async def start_experiment(
    admin: AdminUser, pool: PoolDep, now: Now, experiment_id: str = ExperimentIdPath
) -> ExperimentPublic:
    """409 unless a draft, or while another experiment of its target runs."""
    started = await experiments.start(
        pool, tenant_id=admin.tenant_id, experiment_id=experiment_id, now=now
    )
    return _public(started)


@router.post("/v1/experiments/{experiment_id}/stop", summary="Stop a running experiment (admin)")
async def stop_experiment(
    admin: AdminUser, pool: PoolDep, now: Now, experiment_id: str = ExperimentIdPath
) -> ExperimentPublic:
    """Learners go back to the default strategy; results stay readable. 409 unless running."""
    stopped = await experiments.stop(
        pool, tenant_id=admin.tenant_id, experiment_id=experiment_id, now=now
    )
    return _public(stopped)


@router.get("/v1/experiments/{experiment_id}/results", summary="Read out an experiment (admin)")
async def experiment_results(
    admin: AdminUser, pool: PoolDep, experiment_id: str = ExperimentIdPath
) -> ResultsPublic:
    """Per variant: counts, rate, lift, always-valid p-value and interval, posterior."""
    found = await experiments.results(pool, tenant_id=admin.tenant_id, experiment_id=experiment_id)
    return ResultsPublic(
        experiment=_public(found.experiment),
        method=METHOD,
        looks=found.looks,
        looked_at=found.looked_at,
        arms=[
            ArmPublic(
                variant=a.variant,
                exposed=a.n,
                converted=a.x,
                rate=a.rate,
                lift=a.lift,
                p_value=a.p_value,
                ci_low=a.ci_low,
                ci_high=a.ci_high,
                p_best=a.p_best,
                expected_loss=a.expected_loss,
                verdict=a.verdict,
            )
            for a in found.arms
        ],
    )


@router.get(
    "/v1/analytics/recommendations", summary="Recommendation outcomes per strategy and variant"
)
async def recommendation_analytics(
    principal: TeacherOrAdmin,
    pool: PoolDep,
    since: datetime | None = SinceQuery,
) -> RecommendationAnalyticsPublic:
    """Tenant-wide rates (no learner is named): click, complete, helpful, skip, mastery gain."""
    by_strategy, by_variant = await experiments.recommendation_analytics(
        pool, tenant_id=principal.tenant_id, since=since
    )
    return RecommendationAnalyticsPublic(
        by_strategy=[
            OutcomeRatesPublic.model_validate(r, from_attributes=True) for r in by_strategy
        ],
        by_variant=[OutcomeRatesPublic.model_validate(r, from_attributes=True) for r in by_variant],
    )
