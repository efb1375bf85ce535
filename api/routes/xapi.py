"""The CMS settings of xAPI statements in: activity ids -> items and skills, unmapped policy.

Statements themselves are posted to ingest (``/xAPI/statements``, ingest/routes/xapi.py);
docs/integrations.md says how an LRS client is set up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import ContentStaff, Editor, Now, PoolDep
from api.exceptions import NotFoundError
from api.schemas.xapi import (
    ActivityMappingPublic,
    ActivityMappingsUpdate,
    XapiSettingsPublic,
)
from api.services import xapi_activities

router = APIRouter(prefix="/v1/xapi", tags=["xapi"])


@router.get("/activities", summary="xAPI activity ids mapped to items (authors, reviewers, admins)")
async def list_activities(staff: ContentStaff, pool: PoolDep) -> list[ActivityMappingPublic]:
    mappings = await xapi_activities.list_mappings(pool, tenant_id=staff.tenant_id)
    return [ActivityMappingPublic.model_validate(m, from_attributes=True) for m in mappings]


@router.put(
    "/activities", status_code=status.HTTP_204_NO_CONTENT, summary="Map activity ids to items"
)
async def put_activities(
    body: ActivityMappingsUpdate, editor: Editor, pool: PoolDep, now: Now
) -> None:
    """Create or replace mappings; 422 naming a skill the tenant does not have."""
    await xapi_activities.put_mappings(
        pool,
        tenant_id=editor.tenant_id,
        mappings=[
            xapi_activities.ActivityMapping(
                a.activity_id, a.item_id, a.item_version, tuple(a.skill_ids)
            )
            for a in body.activities
        ],
        now=now,
    )


@router.delete(
    "/activities", status_code=status.HTTP_204_NO_CONTENT, summary="Unmap one activity id"
)
async def delete_activity(
    editor: Editor,
    pool: PoolDep,
    activity_id: Annotated[str, Query(min_length=1, max_length=2048)],
) -> None:
    if not await xapi_activities.delete_mapping(
        pool, tenant_id=editor.tenant_id, activity_id=activity_id
    ):
        raise NotFoundError("no mapping of this activity id", field="query.activity_id")


@router.get("/settings", summary="What happens to statements mapped to no answer")
async def get_settings(staff: ContentStaff, pool: PoolDep) -> XapiSettingsPublic:
    policy = await xapi_activities.unmapped_policy(pool, tenant_id=staff.tenant_id)
    return XapiSettingsPublic.model_validate({"unmapped": policy})


@router.put("/settings", summary="Store or refuse statements mapped to no answer (author, admin)")
async def put_settings(
    body: XapiSettingsPublic, editor: Editor, pool: PoolDep, now: Now
) -> XapiSettingsPublic:
    await xapi_activities.set_unmapped_policy(
        pool, tenant_id=editor.tenant_id, policy=body.unmapped, now=now
    )
    return body
