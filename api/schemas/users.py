"""Request and response bodies of the users routes (api/routes/users.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, EmailStr, Field

from api.services.principals import Role


def _tenant_grantable(roles: list[Role]) -> list[Role]:
    # A platform operator sees every tenant's pipeline: no tenant admin may grant it
    # (it is granted in SQL by whoever runs the deployment; docs/security.md).
    if Role.PLATFORM_OPERATOR in roles:
        raise ValueError("platform_operator is not granted through the API")
    return roles


TenantRoles = Annotated[list[Role], AfterValidator(_tenant_grantable)]


class UserPublic(BaseModel):
    id: str
    tenant_id: str
    email: str
    display_name: str
    roles: list[Role]
    email_verified: bool
    status: str
    mfa_enabled: bool
    locked_until: datetime | None
    created_at: datetime


class UserCreate(BaseModel):
    email: EmailStr
    password: str | None = Field(
        default=None, max_length=1024, description="omit to let the user set one by reset"
    )
    display_name: str = Field(default="", max_length=200)
    roles: TenantRoles = Field(default_factory=lambda: [Role.LEARNER], min_length=1)


class RolesUpdate(BaseModel):
    roles: TenantRoles = Field(min_length=1)
