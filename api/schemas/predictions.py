"""Request and response bodies of the predictions routes (api/routes/predictions.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SkillPredictionPublic(BaseModel):
    skill_id: str
    p_correct: float = Field(ge=0, le=1, description="P(next answer on the skill correct)")
    model_version: str = Field(description='the model that wrote it: "dkt@3", or "bkt"')
    updated_at: datetime = Field(description="UTC time the prediction was written")


class LearnerPredictionsPublic(BaseModel):
    user_id: str
    skills: list[SkillPredictionPublic]


class AttemptWeightPublic(BaseModel):
    answers_ago: int = Field(ge=0, description="0 = the learner's newest attempt")
    skill_id: str
    correct: bool
    weight: float = Field(description="model scale; larger magnitude mattered more")


class SkillPredictionExplained(SkillPredictionPublic):
    user_id: str
    explained_by: str | None = Field(
        default=None, description="tracer that explained it; null when not asked"
    )
    explanation: list[AttemptWeightPublic] | None = Field(
        default=None, description="past attempts, largest weight magnitude first"
    )
