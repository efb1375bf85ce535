"""Request and response bodies of the api_keys routes (api/routes/api_keys.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from learnstream import apikeys
from learnstream.apikeys import Scope


class ApiKeyCreate(BaseModel):
    app_name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(
        default_factory=lambda: sorted(apikeys.DEFAULT_SCOPES),
        min_length=1,
        max_length=len(Scope),
        description="what the key may do; default events:write only",
    )


class ApiKeyPublic(BaseModel):
    key_id: str
    app_name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyPublic):
    api_key: str = Field(description="the whole key; shown only in this answer")
