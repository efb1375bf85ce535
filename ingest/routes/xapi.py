"""``/xAPI/statements``: Learnstream as a Learning Record Store that takes statements in.

xAPI 1.0.3 semantics (Communication, part 3 of the specification):

* every request carries ``X-Experience-API-Version: 1.0.x`` (400 otherwise), every
  answer ``X-Experience-API-Version: 1.0.3``;
* ``POST`` takes one statement or an array and answers 200 with the statement ids in
  order; ``PUT ?statementId=`` takes one and answers 204;
* a batch is taken whole or refused whole: one invalid statement, a repeated id
  inside the batch, or (when the tenant refuses them) an unmapped statement is a
  400 naming it, and nothing is stored or published;
* a statement id used before with other content is a 409; with the same content, a
  no-op (the retry of a client that lost its answer);
* statements that describe an answer to a mapped activity become AttemptEvents
  published through the same path as ``POST /v1/events`` (ingest.batch), the
  statement id as event_id, so a resend comes back DUPLICATE and is published once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from ingest import xapi, xapi_store
from ingest.codec import DecodedEvent
from ingest.deps import IngestorDep, LrsClient, Public, SettingsDep
from ingest.exceptions import DependencyUnavailableError, FieldProblem, IngestError
from ingest.routes.events import read_body
from ingest.validation import Limits, validate_event
from ingest.xapi_store import Keeping, UnmappedPolicy
from learnstream.apikeys import ApiKey
from learnstream.events.v1 import ingest_pb2

router = APIRouter(prefix="/xAPI", tags=["xapi"])
VERSION_HEADER = "X-Experience-API-Version"
_HEADERS = {VERSION_HEADER: xapi.XAPI_VERSION}
_Status = ingest_pb2.EventStatus


class XapiBadRequest(IngestError):
    """The statements, or the request carrying them, break the xAPI rules (all refused)."""

    slug = "xapi-bad-request"
    title = "Statements refused"

    def __init__(self, detail: str, *, errors: Sequence[FieldProblem] = ()) -> None:
        super().__init__(detail, errors=errors, headers=dict(_HEADERS))


class XapiConflict(IngestError):
    """A statement id was used before for a different statement."""

    status = 409
    slug = "xapi-conflict"
    title = "Statement id already used"

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(
            "these statement ids were stored before with other content; nothing of this "
            "batch was stored",
            errors=[FieldProblem("statement.id", i) for i in ids],
            headers=dict(_HEADERS),
        )


@router.get("/about", summary="The xAPI versions this LRS speaks", dependencies=[Public])
async def about() -> JSONResponse:
    return JSONResponse({"version": [xapi.XAPI_VERSION]}, headers=_HEADERS)


@router.post("/statements", summary="Store a statement or a batch of statements")
async def post_statements(
    request: Request, api_key: LrsClient, settings: SettingsDep, ingestor: IngestorDep
) -> JSONResponse:
    """200 with the ids of the statements, in the order sent."""
    raw = await _statements_body(request, max_bytes=settings.ingest_max_body_bytes)
    statements = raw if isinstance(raw, list) else [raw]
    if not statements:
        raise XapiBadRequest("the batch holds no statement")
    if len(statements) > settings.ingest_max_batch_events:
        raise XapiBadRequest(
            f"{len(statements)} statements; at most {settings.ingest_max_batch_events} a batch"
        )
    ids = await _take(request, statements, api_key=api_key, ingestor=ingestor, settings=settings)
    return JSONResponse(ids, headers=_HEADERS)


@router.put("/statements", status_code=204, summary="Store one statement under its id")
async def put_statement(
    request: Request,
    api_key: LrsClient,
    settings: SettingsDep,
    ingestor: IngestorDep,
    statement_id: Annotated[str, Query(alias="statementId")],
) -> Response:
    """204; the body's ``id``, when present, must be ``statementId``."""
    raw = await _statements_body(request, max_bytes=settings.ingest_max_body_bytes)
    if not isinstance(raw, dict):
        raise XapiBadRequest("PUT takes one statement (a JSON object)")
    if "id" in raw and str(raw["id"]).lower() != statement_id.lower():
        raise XapiBadRequest(
            "the statement's id differs from statementId",
            errors=[FieldProblem("statement.id", "differs from query.statementId")],
        )
    await _take(
        request,
        [{**raw, "id": statement_id}],
        api_key=api_key,
        ingestor=ingestor,
        settings=settings,
    )
    return Response(status_code=204, headers=_HEADERS)


async def _statements_body(request: Request, *, max_bytes: int) -> Any:
    version = request.headers.get(VERSION_HEADER, "")
    if not version.startswith("1.0"):
        raise XapiBadRequest(
            f"send {VERSION_HEADER}: {xapi.XAPI_VERSION}",
            errors=[FieldProblem(f"header.{VERSION_HEADER}", "missing or not 1.0.x")],
        )
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise XapiBadRequest(
            "statements are sent as application/json (attachments are not taken)",
            errors=[FieldProblem("header.Content-Type", "not application/json")],
        )
    body = await read_body(request, max_bytes=max_bytes)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XapiBadRequest(
            f"the body is not JSON: {exc}", errors=[FieldProblem("body", "not JSON")]
        ) from exc


async def _take(
    request: Request,
    statements: list[Any],
    *,
    api_key: ApiKey,
    ingestor: IngestorDep,
    settings: SettingsDep,
) -> list[str]:
    """Validate, keep and publish ``statements``, all or none; their ids in order."""
    pool = request.app.state.pool
    tenant_id = api_key.tenant_id
    now = datetime.now(UTC)
    parsed = _parse_all(statements)
    mappings = await xapi_store.activity_mappings(
        pool, tenant_id=tenant_id, activity_ids=(p.activity_id for p in parsed)
    )
    policy = await xapi_store.unmapped_policy(pool, tenant_id=tenant_id)
    problems: list[FieldProblem] = []
    keeping: list[Keeping] = []
    attempts: list[DecodedEvent] = []
    limits = Limits.from_settings(settings)
    for i, p in enumerate(parsed):
        mapping = mappings.get(p.activity_id)
        why_not = xapi.not_an_attempt(p, mapping)
        if why_not is not None:
            if policy is UnmappedPolicy.REFUSE:
                problems.append(FieldProblem(f"statements[{i}]", f"not taken: {why_not}"))
            keeping.append(Keeping(p, attempt=False))
            continue
        assert mapping is not None
        event = ingest_pb2.LearningEvent(attempt=xapi.attempt_event(p, mapping, stored_at=now))
        for violation in validate_event(event, tenant_id=tenant_id, now=now, limits=limits):
            problems.append(
                FieldProblem(f"statements[{i}]", f"{violation.field}: {violation.reason}")
            )
        keeping.append(Keeping(p, attempt=True))
        attempts.append(DecodedEvent(event, event_id=p.statement_id, kind="attempt"))
    erased = await ingestor.erased.among(pool, {(tenant_id, p.learner_id) for p in parsed})
    problems += [
        FieldProblem(f"statements[{i}].actor", "erased")
        for i, p in enumerate(parsed)
        if (tenant_id, p.learner_id) in erased
    ]
    if problems:
        raise XapiBadRequest(
            "statements refused; nothing of this batch was stored", errors=problems
        )
    conflicts = await xapi_store.keep_statements(pool, tenant_id=tenant_id, statements=keeping)
    if conflicts:
        raise XapiConflict(conflicts)
    if attempts:
        await _publish(attempts, api_key=api_key, ingestor=ingestor, now=now, settings=settings)
    return [p.statement_id for p in parsed]


def _parse_all(statements: list[Any]) -> list[xapi.ParsedStatement]:
    parsed: list[xapi.ParsedStatement] = []
    problems: list[FieldProblem] = []
    first_of: dict[str, int] = {}
    for i, raw in enumerate(statements):
        result = xapi.parse_statement(raw, field=f"statements[{i}]")
        if not isinstance(result, xapi.ParsedStatement):
            problems.append(FieldProblem(result.field, result.reason))
            continue
        if result.statement_id in first_of:
            problems.append(
                FieldProblem(
                    f"statements[{i}].id", f"same id as statements[{first_of[result.statement_id]}]"
                )
            )
            continue
        first_of[result.statement_id] = i
        parsed.append(result)
    if problems:
        raise XapiBadRequest(
            "statements refused; nothing of this batch was stored", errors=problems
        )
    return parsed


async def _publish(
    attempts: list[DecodedEvent],
    *,
    api_key: ApiKey,
    ingestor: IngestorDep,
    now: datetime,
    settings: SettingsDep,
) -> None:
    """Publish through ingest's batch path; 503 unless every attempt is in the broker."""
    response = await ingestor.ingest(attempts, api_key=api_key, now=now)
    waiting = [
        r
        for r in response.results
        if r.status not in (_Status.EVENT_STATUS_ACCEPTED, _Status.EVENT_STATUS_DUPLICATE)
    ]
    if waiting:
        # RETRY_LATER (another request is publishing the same statement) or a rejection
        # validate_event did not foresee: the statements are kept, a resend publishes.
        raise DependencyUnavailableError(
            "kafka",
            f"{len(waiting)} statements are not yet published ({waiting[0].reason}); send "
            "the batch again",
            retry_after_s=settings.ingest_retry_after_s,
        )
