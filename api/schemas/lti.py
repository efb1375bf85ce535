"""Request and response bodies of the LTI routes (api/routes/lti.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.services import skills

PLATFORM_ID_PATTERN = r"^[a-z0-9-]{1,40}$"


class PlatformCreate(BaseModel):
    platform_id: str = Field(pattern=PLATFORM_ID_PATTERN)
    issuer: str = Field(min_length=8, max_length=500)
    client_id: str = Field(min_length=1, max_length=500)
    auth_login_url: str = Field(min_length=8, max_length=1000)
    auth_token_url: str = Field(min_length=8, max_length=1000)
    jwks_url: str = Field(min_length=8, max_length=1000)
    deployment_ids: list[str] = Field(min_length=1, max_length=50)


class PlatformPublic(PlatformCreate):
    tool_login_url: str = Field(description="paste as the OIDC login initiation URL")
    tool_launch_url: str = Field(description="paste as the target link / redirect URI")
    tool_jwks_url: str = Field(description="paste as the tool's public keyset URL")


class PublishGrades(BaseModel):
    skill_id: str = Field(pattern=skills.SKILL_ID_PATTERN)
