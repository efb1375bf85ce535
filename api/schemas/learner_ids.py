"""Request and response bodies of the learner_ids routes (api/routes/learner_ids.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LearnerIdUpdate(BaseModel):
    learner_id: str | None = Field(
        max_length=200,
        description="the id the tenant's app sends as user_id for this person; "
        "null files the account under its own id again",
    )


class LearnerIdPublic(BaseModel):
    user_id: str
    learner_id: str = Field(description="effective: the set id, else the account id")
