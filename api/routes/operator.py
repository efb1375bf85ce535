"""Operator views: fraud alerts with their review, and pipeline health (operators, MFA)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Now, Operator, PlatformOperator, PoolDep, SettingsDep
from api.pagination import Cursor, Limit, Page, decode_cursor
from api.schemas.operator import (
    FraudAlertPublic,
    PipelineHealthPublic,
    ReviewCreate,
)
from api.services import operator
from api.services.operator import AlertStatus, SubjectKind

router = APIRouter(prefix="/v1/operator", tags=["operator"])


@router.get("/fraud-alerts", summary="Fraud alerts of your tenant, newest first")
async def fraud_alerts(
    principal: Operator,
    pool: PoolDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    alert_status: Annotated[
        AlertStatus, Query(alias="status", description="open = not reviewed yet")
    ] = AlertStatus.OPEN,
) -> Page[FraudAlertPublic]:
    """Flagged attempts and sessions with the signals behind each score."""
    after = decode_cursor(cursor, operator.parse_alert_cursor)
    alerts = await operator.fraud_alerts(
        pool, tenant_id=principal.tenant_id, status=alert_status, after=after, limit=limit
    )
    return Page[FraudAlertPublic](
        items=[FraudAlertPublic.model_validate(a) for a in alerts],
        next_cursor=operator.alert_cursor(alerts[-1]) if len(alerts) == limit else None,
    )


@router.post(
    "/fraud-alerts/{subject_kind}/{subject_id}/review",
    summary="Confirm or dismiss a fraud alert",
)
async def review_fraud_alert(
    body: ReviewCreate,
    subject_kind: SubjectKind,
    principal: Operator,
    pool: PoolDep,
    now: Now,
    subject_id: str = Path(min_length=1, max_length=200),
) -> FraudAlertPublic:
    """The latest decision wins; every decision is audited. 404 for an alert that is
    not a flagged alert of your tenant."""
    alert = await operator.review_alert(
        pool,
        principal,
        subject_kind=subject_kind,
        subject_id=subject_id,
        decision=body.decision,
        note=body.note,
        now=now,
    )
    return FraudAlertPublic.model_validate(alert)


@router.get("/pipeline", summary="Pipeline health: consumer lag per processor (platform)")
async def pipeline(
    principal: PlatformOperator, pool: PoolDep, settings: SettingsDep, now: Now
) -> PipelineHealthPublic:
    """Deployment-wide: committed offsets per processor and topic against the broker's
    end offsets, plus the workers' gauges. Partitions carry every tenant's events, so
    these offsets cannot be cut by tenant: only platform operators (a role granted in
    SQL by whoever runs the deployment, MFA required) see them; a tenant's operators
    get 403."""
    health = await operator.pipeline_health(pool, settings, now=now)
    return PipelineHealthPublic.model_validate(health)
