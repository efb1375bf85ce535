"""Request and response bodies of the audit routes (api/routes/audit.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntryPublic(BaseModel):
    id: int
    occurred_at: datetime
    actor_kind: str | None
    actor_id: str | None
    action: str
    outcome: str
    target_id: str | None
    ip: str | None
    details: dict[str, Any]
