"""Request and response bodies of the tenants routes (api/routes/tenants.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.services import retention


class RetentionPublic(BaseModel):
    retention_days: int | None = Field(
        ge=retention.MIN_RETENTION_DAYS,
        le=retention.MAX_RETENTION_DAYS,
        description="days an inactive learner's data is kept; null keeps it forever",
    )
