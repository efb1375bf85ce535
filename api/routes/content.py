"""Content items: create, edit (new version), history, rollback, workflow, search,
bulk import and export."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from api.deps import CatalogueReader, ContentStaff, Editor, Now, PoolDep
from api.exceptions import InvalidInputError
from api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, offset_key
from api.schemas.content import (
    ImportReportPublic,
    ItemCreate,
    ItemEdit,
    ItemPublic,
    RollbackRequest,
    TransitionPublic,
    TransitionRequest,
    VersionPublic,
)
from api.services import content, content_import
from api.services.content import ContentKind, ContentStatus
from api.services.content_import import ImportFormat

router = APIRouter(prefix="/v1/content", tags=["content"])

ItemIdPath = Annotated[str, Path(pattern=content.ITEM_ID_PATTERN)]
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def _public(item: content.ContentItem) -> ItemPublic:
    return ItemPublic.model_validate(item, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a draft (author, admin)")
async def create_item(body: ItemCreate, editor: Editor, pool: PoolDep, now: Now) -> ItemPublic:
    item = await content.create_item(
        pool,
        editor,
        item_id=body.item_id,
        kind=body.kind,
        title=body.title,
        skill_ids=body.skill_ids,
        payload=body.payload,
        now=now,
    )
    return _public(item)


@router.get("", summary="Search: full text (web syntax) with skill, kind and status filters")
async def search_items(
    principal: CatalogueReader,
    pool: PoolDep,
    q: Annotated[str | None, Query(max_length=500, description="e.g. fractions -video")] = None,
    skill_id: str | None = None,
    kind: ContentKind | None = None,
    status_: Annotated[ContentStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ItemPublic]:
    """Learners and client apps search published items only; staff every status."""
    offset = decode_cursor(cursor, offset_key) or 0
    found = await content.search(
        pool,
        principal,
        content.SearchQuery(
            text=q or None,
            skill_id=skill_id,
            kind=kind,
            status=status_,
            offset=offset,
            limit=limit,
        ),
    )
    more = encode_cursor(str(offset + limit)) if len(found) == limit else None
    return Page[ItemPublic](items=[_public(i) for i in found], next_cursor=more)


@router.post("/import", summary="Bulk import CSV or JSON rows (author, admin)")
async def import_items(
    request: Request,
    editor: Editor,
    pool: PoolDep,
    now: Now,
    format_: Annotated[ImportFormat, Query(alias="format")] = ImportFormat.JSON,
    dry_run: bool = False,
) -> ImportReportPublic:
    """All or nothing: with any row error nothing is written (422 listing every row's
    problems); ``dry_run=true`` writes nothing and answers 200 with the same report."""
    # LimitRequestBody (api/app.py) already cut the body off at api_max_import_bytes
    # while it streamed in (413); this is never more than that.
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("import must be UTF-8", field="body", reason="not UTF-8") from exc
    raw_rows, document_problems = content_import.parse_rows(text, format_)
    if document_problems:
        raise InvalidInputError(document_problems[0].reason, errors=document_problems)
    rows, row_problems = content_import.validate_rows(raw_rows)
    report = await content_import.import_items(
        pool, editor, rows, dry_run=dry_run, earlier_problems=row_problems, now=now
    )
    if report.errors and not dry_run:
        raise InvalidInputError(
            f"{len(report.errors)} problems in the import; nothing was written",
            errors=report.errors,
        )
    return ImportReportPublic.model_validate(report, from_attributes=True)


@router.get("/export", summary="Export rows that /import reads (staff)")
async def export_items(
    staff: ContentStaff,
    pool: PoolDep,
    format_: Annotated[ImportFormat, Query(alias="format")] = ImportFormat.JSON,
    skill_id: str | None = None,
    kind: ContentKind | None = None,
    status_: Annotated[ContentStatus | None, Query(alias="status")] = None,
) -> Response:
    items: list[content.ContentItem] = []
    offset = 0
    while True:  # page through, so one export is never one unbounded query
        page = await content.search(
            pool,
            staff,
            content.SearchQuery(
                skill_id=skill_id, kind=kind, status=status_, offset=offset, limit=500
            ),
        )
        items.extend(page)
        if len(page) < 500:
            break
        offset += 500
    body = content_import.render(content_import.export_rows(items), format_)
    media = "text/csv" if format_ is ImportFormat.CSV else "application/json"
    # A download, never rendered inline; the name keeps to [A-Za-z0-9._-] whatever the
    # tenant id holds, so no quote or CR/LF reaches the header.
    filename = f"content-{_UNSAFE_FILENAME.sub('_', staff.tenant_id)[:64]}.{format_.value}"
    return Response(
        body,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/{item_id}", summary="One item (drafts only for staff)")
async def get_item(item_id: ItemIdPath, principal: CatalogueReader, pool: PoolDep) -> ItemPublic:
    """Learners and keys get the published version without answers or staff ids."""
    return _public(await content.get_item(pool, principal, item_id=item_id))


@router.put("/{item_id}", summary="Edit: appends a new version (author, admin)")
async def edit_item(
    item_id: ItemIdPath, body: ItemEdit, editor: Editor, pool: PoolDep, now: Now
) -> ItemPublic:
    item = await content.edit_item(
        pool,
        editor,
        item_id=item_id,
        title=body.title,
        skill_ids=body.skill_ids,
        payload=body.payload,
        note=body.note,
        base_version=body.base_version,
        now=now,
    )
    return _public(item)


@router.get("/{item_id}/versions", summary="Every version, oldest first (staff)")
async def list_versions(
    item_id: ItemIdPath, staff: ContentStaff, pool: PoolDep
) -> list[VersionPublic]:
    found = await content.versions(pool, staff, item_id=item_id)
    return [VersionPublic.model_validate(v, from_attributes=True) for v in found]


@router.post("/{item_id}/rollback", summary="New version equal to an old one (author, admin)")
async def rollback(
    item_id: ItemIdPath, body: RollbackRequest, editor: Editor, pool: PoolDep, now: Now
) -> ItemPublic:
    item = await content.rollback_item(
        pool, editor, item_id=item_id, to_version=body.version, now=now
    )
    return _public(item)


@router.post("/{item_id}/transitions", summary="Move one workflow step")
async def transition(
    item_id: ItemIdPath, body: TransitionRequest, staff: ContentStaff, pool: PoolDep, now: Now
) -> ItemPublic:
    """draft -> in_review -> approved -> published -> archived; 403 names who may."""
    item = await content.transition_item(
        pool, staff, item_id=item_id, target=body.to_status, comment=body.comment, now=now
    )
    return _public(item)


@router.get("/{item_id}/transitions", summary="Workflow history (staff)")
async def list_transitions(
    item_id: ItemIdPath, staff: ContentStaff, pool: PoolDep
) -> list[TransitionPublic]:
    found = await content.transitions(pool, staff, item_id=item_id)
    return [TransitionPublic.model_validate(t, from_attributes=True) for t in found]
