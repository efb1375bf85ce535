"""Request and response bodies of the operator routes (api/routes/operator.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.services.operator import Decision, SubjectKind


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class FraudReasonPublic(_Public):
    signal: str = Field(description="rapid_response, person_misfit, collusion, velocity ...")
    weight: float = Field(ge=0, le=1)
    detail: str


class ReviewPublic(_Public):
    decision: Decision
    note: str
    reviewed_by: str | None
    reviewed_at: datetime


class FraudAlertPublic(_Public):
    subject_kind: SubjectKind
    subject_id: str = Field(description="the attempt's event_id or the session_id")
    user_id: str = Field(description="the learner id the events carry")
    session_id: str
    item_id: str
    device_id: str
    occurred_at: datetime
    score: float = Field(ge=0, le=1)
    reasons: list[FraudReasonPublic]
    review: ReviewPublic | None


class ReviewCreate(BaseModel):
    decision: Decision
    note: str = Field(default="", max_length=2000)


class TopicLagPublic(_Public):
    topic: str
    partitions: int
    committed: int
    end_offset: int | None
    lag: int | None = Field(description="records not yet applied; null if the broker is silent")
    last_commit_at: datetime
    seconds_since_commit: float


class GroupHealthPublic(_Public):
    consumer_group: str
    processor: str
    topics: list[TopicLagPublic]
    lag: int | None
    problems: list[str] = Field(
        description="rows gone while offsets stayed (end offset below the committed one, "
        "or an empty view with committed offsets); empty when healthy"
    )


class WorkerMetricsPublic(_Public):
    url: str
    reachable: bool
    error: str | None
    lag: dict[str, int] = Field(description='"<processor> <topic>" -> records, from the gauges')
    stalled_partitions: int


class PipelineHealthPublic(_Public):
    generated_at: datetime
    broker_reachable: bool
    broker_error: str | None
    groups: list[GroupHealthPublic]
    workers: list[WorkerMetricsPublic]
