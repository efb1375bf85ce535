"""User accounts of a tenant: me, and admin management (create, roles, unlock, MFA reset)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminUser, CurrentUser, Now, PoolDep, RedisDep, SettingsDep
from api.exceptions import NotFoundError
from api.pagination import Cursor, Limit, Page, decode_cursor, next_cursor, uuid_key
from api.schemas.users import (
    RolesUpdate,
    UserCreate,
    UserPublic,
)
from api.services import accounts, mfa, recovery
from api.services.principals import Role

router = APIRouter(prefix="/v1/users", tags=["users"])


def user_public(user: accounts.User) -> UserPublic:
    """The public shape of a user (roles sorted)."""
    return UserPublic(
        id=user.id,
        tenant_id=user.tenant_id,
        email=user.email,
        display_name=user.display_name,
        roles=sorted(user.roles),
        email_verified=user.email_verified,
        status=user.status,
        mfa_enabled=user.mfa_enabled,
        locked_until=user.locked_until,
        created_at=user.created_at,
    )


@router.get("/me", summary="The signed-in user")
async def me(user: CurrentUser, pool: PoolDep) -> UserPublic:
    found = await accounts.require_user(pool, tenant_id=user.tenant_id, user_id=user.subject_id)
    return user_public(found)


@router.get("", summary="Users of the tenant (admin)")
async def list_users(
    admin: AdminUser,
    pool: PoolDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    role: Role | None = None,
) -> Page[UserPublic]:
    users = await accounts.list_users(
        pool,
        tenant_id=admin.tenant_id,
        role=role,
        after_id=decode_cursor(cursor, uuid_key),
        limit=limit,
    )
    return Page[UserPublic](
        items=[user_public(u) for u in users], next_cursor=next_cursor([u.id for u in users], limit)
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a user (admin)")
async def create_user(
    body: UserCreate, admin: AdminUser, pool: PoolDep, settings: SettingsDep, now: Now
) -> UserPublic:
    """The address counts as verified: the admin vouches for it."""
    user = await accounts.create_user(
        pool,
        settings,
        tenant_id=admin.tenant_id,
        email_address=str(body.email),
        password=body.password,
        display_name=body.display_name,
        roles=frozenset(body.roles),
        email_verified=True,
        now=now,
    )
    return user_public(user)


@router.get("/{user_id}", summary="One user (admin)")
async def get_user(user_id: str, admin: AdminUser, pool: PoolDep) -> UserPublic:
    found = await accounts.require_user(pool, tenant_id=admin.tenant_id, user_id=user_id)
    return user_public(found)


@router.put("/{user_id}/roles", summary="Replace a user's roles (admin)")
async def set_roles(
    user_id: str,
    body: RolesUpdate,
    admin: AdminUser,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> UserPublic:
    """Removing a role ends the user's current access tokens at once."""
    user = await accounts.set_roles(
        pool,
        redis,
        settings,
        tenant_id=admin.tenant_id,
        user_id=user_id,
        roles=frozenset(body.roles),
        admin_id=admin.subject_id,
    )
    return user_public(user)


@router.post(
    "/{user_id}/unlock", status_code=status.HTTP_204_NO_CONTENT, summary="Clear a lockout (admin)"
)
async def unlock(
    user_id: str,
    admin: AdminUser,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    now: Now,
) -> None:
    await recovery.unlock_by_admin(
        pool,
        redis,
        settings,
        tenant_id=admin.tenant_id,
        user_id=user_id,
        admin_id=admin.subject_id,
        now=now,
    )


@router.post(
    "/{user_id}/mfa/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Turn a user's MFA off after a lost device (admin)",
)
async def reset_mfa(user_id: str, admin: AdminUser, pool: PoolDep) -> None:
    if await accounts.get_user(pool, tenant_id=admin.tenant_id, user_id=user_id) is None:
        raise NotFoundError("no such user in this tenant", field="path.user_id", reason="not found")
    await mfa.disable(
        pool, tenant_id=admin.tenant_id, user_id=user_id, actor_id=admin.subject_id, ip=None
    )
