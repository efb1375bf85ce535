"""Bodies of the experiments and analytics routes (api/routes/experiments.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.services.experiments import Metric, Status, Target
from scheduler.experiments import DEFAULT_ALPHA, DEFAULT_TAU, Verdict


class VariantSpec(BaseModel):
    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(gt=0, le=1000, description="relative share of learners")
    strategy: str = Field(
        description="session strategy: bandit (the default choice), practice, review, mock_test"
    )


class ExperimentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    target: Target = Target.RECOMMENDATION_STRATEGY
    variants: list[VariantSpec] = Field(
        min_length=2, max_length=10, description="the control first"
    )
    target_metric: Metric
    minimum_sample: int = Field(
        ge=0, le=10_000_000, description="learners per arm before a verdict"
    )
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0, le=0.2, description="false-positive rate")
    tau: float = Field(
        default=DEFAULT_TAU, gt=0, le=1, description="mSPRT mixing SD: the effect (absolute rate) "
        "the test is tuned to find fastest"
    )  # fmt: skip


class ExperimentPublic(BaseModel):
    experiment_id: str
    name: str
    target: Target
    variants: list[VariantSpec]
    target_metric: Metric
    minimum_sample: int
    alpha: float
    tau: float
    status: Status
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None


class ArmPublic(BaseModel):
    variant: str
    exposed: int = Field(description="learners exposed")
    converted: int = Field(description="exposed learners who converted on the target metric")
    rate: float = Field(ge=0, le=1)
    lift: float = Field(description="rate minus the control's rate")
    p_value: float = Field(description="always-valid p-value against the control (mSPRT)")
    ci_low: float = Field(description="always-valid (1 - alpha) interval of the lift")
    ci_high: float
    p_best: float = Field(description="posterior P(this arm has the highest rate)")
    expected_loss: float = Field(description="posterior expected loss of choosing it")
    verdict: Verdict


class ResultsPublic(BaseModel):
    experiment: ExperimentPublic
    method: str
    looks: int = Field(description="times the analytics processor updated the counts")
    looked_at: datetime | None
    arms: list[ArmPublic]


class OutcomeRatesPublic(BaseModel):
    group: str
    experiment_id: str | None
    variant: str | None
    recommended: int = Field(description="(learner, item) pairs recommended")
    click_rate: float | None
    complete_rate: float | None
    helpful_rate: float | None = Field(description="helpful / (helpful + not helpful)")
    skip_rate: float | None
    mean_mastery_gain: float | None = Field(description="mean change of p_mastery afterwards")


class RecommendationAnalyticsPublic(BaseModel):
    by_strategy: list[OutcomeRatesPublic]
    by_variant: list[OutcomeRatesPublic]
