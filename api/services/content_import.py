"""Bulk import and export of content items as CSV or JSON.

Both formats carry the same rows: ``item_id`` (optional; new id if empty),
``kind``, ``title``, ``skill_ids`` (a JSON list, or ``a;b`` in CSV) and
``payload`` (a JSON object). In CSV, columns beyond these become payload fields
(JSON-looking cells such as ``["a","b"]`` are parsed), so simple questions fit
in plain columns. Export writes what import reads, so a round trip is lossless.

Rules: every row is checked before anything is written, and errors name the
row and the field (``rows[3].payload.answer_key``). An import with any error
writes nothing; a dry run writes nothing and reports what would happen. A row
equal to the item's current version is "unchanged" and adds no version.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from api.exceptions import FieldProblem
from api.services import content
from api.services import skills as skill_service
from api.services.content import ContentKind
from api.services.principals import Principal
from api.services.transactions import transaction
from learnstream.db import Queryable

MAX_IMPORT_ROWS = 5_000
# JSON (the document, or a JSON cell of a CSV) may nest arrays and objects this deep;
# deeper input is refused before anything walks it (recursion would be a 500).
MAX_JSON_DEPTH = 32
# A CSV cell may have at most this many characters (the csv module's own default,
# which it enforces by raising; the error is turned into a 422 naming the row).
MAX_CSV_FIELD_CHARS = 131_072
# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...),
# +cmd|..., -1+1, @SUM, a tab or CR before one): export prefixes a quote (the OWASP
# rule) and import removes that quote again, so a round trip stays lossless.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIXED_COLUMNS = ("item_id", "kind", "title", "skill_ids", "payload")
_ITEM_ID = re.compile(content.ITEM_ID_PATTERN)
_ROW_FIELD = re.compile(r"^rows\[(\d+)\]")


class ImportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row; ``row`` counts from 1 (the CSV header is not a row)."""

    row: int
    item_id: str | None
    kind: ContentKind
    title: str
    skill_ids: tuple[str, ...]
    payload: dict[str, Any]


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, for a dry run, would do)."""

    dry_run: bool
    applied: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[FieldProblem] = field(default_factory=list)


def _problem(row: int, where: str, reason: str) -> FieldProblem:
    return FieldProblem(f"rows[{row}].{where}" if where else f"rows[{row}]", reason)


class TooDeepError(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH`."""


def loads_bounded(text: str) -> Any:
    """``json.loads`` refusing documents nested deeper than :data:`MAX_JSON_DEPTH`
    (TooDeepError) and JSON errors (json.JSONDecodeError), never a RecursionError."""
    if _bracket_depth(text) > MAX_JSON_DEPTH:
        raise TooDeepError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text)


def _bracket_depth(text: str) -> int:
    # Depth of [ and { outside strings, found with a regex over the structural
    # characters and strings, so a 10 MB document is scanned in C, not char by char.
    depth = deepest = 0
    for token in _STRUCTURE.finditer(text):
        match token.group():
            case "[" | "{":
                depth += 1
                deepest = max(deepest, depth)
            case "]" | "}":
                depth -= 1
    return deepest


_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def neutralise_formula(cell: str) -> str:
    """``cell`` made safe to open in a spreadsheet: one more quote before any run of
    quotes (possibly none) that is followed by a formula start, so that
    :func:`restore_formula` can undo exactly this."""
    return "'" + cell if cell.lstrip("'").startswith(FORMULA_STARTS) else cell


def restore_formula(cell: str) -> str:
    """Inverse of :func:`neutralise_formula`, applied to every imported CSV cell."""
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def _cell_value(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return loads_bounded(stripped)
        except json.JSONDecodeError:
            return text
    return text


def parse_rows(text: str, fmt: ImportFormat) -> tuple[list[dict[str, Any]], list[FieldProblem]]:
    """Raw rows (dicts) from a CSV or JSON document, or the problem with the document."""
    if fmt is ImportFormat.JSON:
        try:
            document = loads_bounded(text)
        except json.JSONDecodeError as exc:
            return [], [FieldProblem("body", f"not JSON: {exc.msg} at line {exc.lineno}")]
        except TooDeepError as exc:
            return [], [FieldProblem("body", str(exc))]
        if isinstance(document, dict) and isinstance(document.get("items"), list):
            document = document["items"]
        if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
            return [], [
                FieldProblem("body", "expected a JSON array of objects (or {items: [...]})")
            ]
        raw = document
    else:
        try:
            csv_rows = _csv_rows(text)
        except csv.Error as exc:
            # The csv module's own refusals: a cell over MAX_CSV_FIELD_CHARS, a NUL byte.
            return [], [FieldProblem("body", f"not readable as CSV: {exc}")]
        except TooDeepError as exc:
            return [], [FieldProblem("body", f"a JSON cell is {exc}")]
        if csv_rows is None:
            return [], [FieldProblem("body", "CSV needs a header row with at least kind,title")]
        raw = csv_rows
    if len(raw) > MAX_IMPORT_ROWS:
        return [], [FieldProblem("body", f"at most {MAX_IMPORT_ROWS} rows per import")]
    return raw, []


def _csv_rows(text: str) -> list[dict[str, Any]] | None:
    """Raw rows of a CSV document, None without a usable header; csv.Error for a cell
    over :data:`MAX_CSV_FIELD_CHARS` (the row number is in the message)."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"kind", "title"} <= set(reader.fieldnames):
        return None
    raw: list[dict[str, Any]] = []
    try:
        for record in reader:
            if None in record:
                raw.append({"__error__": "more cells than header columns"})
                continue
            row: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for column, quoted in record.items():
                if quoted is None or quoted == "":
                    continue
                cell = restore_formula(quoted)
                if column == "skill_ids":
                    row[column] = [s.strip() for s in cell.split(";") if s.strip()]
                elif column == "payload":
                    row[column] = _cell_value(cell)
                elif column in FIXED_COLUMNS:
                    row[column] = cell.strip()
                else:
                    extra[column] = _cell_value(cell)
            if extra:
                payload = row.get("payload")
                row["payload"] = {**(payload if isinstance(payload, dict) else {}), **extra}
            raw.append(row)
    except csv.Error as exc:
        raise csv.Error(f"row {len(raw) + 1}: {exc}") from exc
    return raw


def validate_rows(raw_rows: list[dict[str, Any]]) -> tuple[list[ImportRow], list[FieldProblem]]:
    """Rows that passed every per-row rule, and the problems of those that did not."""
    valid: list[ImportRow] = []
    problems: list[FieldProblem] = []
    seen_ids: dict[str, int] = {}
    for number, raw in enumerate(raw_rows, start=1):
        row_problems: list[FieldProblem] = []
        if "__error__" in raw:
            problems.append(_problem(number, "", raw["__error__"]))
            continue
        unknown_keys = sorted(set(raw) - set(FIXED_COLUMNS))
        if unknown_keys:
            row_problems.append(_problem(number, unknown_keys[0], "unknown field"))
        item_id = raw.get("item_id") or None
        if item_id is not None:
            if not isinstance(item_id, str) or not _ITEM_ID.match(item_id):
                row_problems.append(_problem(number, "item_id", "1-100 of A-Z a-z 0-9 _ . : -"))
            elif item_id in seen_ids:
                row_problems.append(_problem(number, "item_id", f"repeats row {seen_ids[item_id]}"))
            else:
                seen_ids[item_id] = number
        try:
            kind = ContentKind(str(raw.get("kind")))
        except ValueError:
            kinds = ", ".join(k.value for k in ContentKind)
            row_problems.append(_problem(number, "kind", f"must be one of: {kinds}"))
            kind = None
        title = raw.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 500:
            row_problems.append(_problem(number, "title", "required, at most 500 characters"))
        skill_ids = raw.get("skill_ids", [])
        if not isinstance(skill_ids, list) or not all(isinstance(s, str) for s in skill_ids):
            row_problems.append(_problem(number, "skill_ids", "must be a list of skill ids"))
            skill_ids = []
        payload = raw.get("payload", {})
        normalized = None
        if kind is not None:
            normalized, payload_problems = content.validate_payload(
                kind, payload, field_prefix=f"rows[{number}].payload"
            )
            row_problems.extend(payload_problems)
        if row_problems or kind is None or normalized is None or not isinstance(title, str):
            problems.extend(row_problems)
            continue
        valid.append(ImportRow(number, item_id, kind, title.strip(), tuple(skill_ids), normalized))
    return valid, problems


async def import_items(
    db: Queryable,
    principal: Principal,
    rows: list[ImportRow],
    *,
    dry_run: bool,
    earlier_problems: list[FieldProblem],
    now: datetime,
) -> ImportReport:
    """Check rows against the tenant (skills, existing kinds) and write them all or none."""
    report = ImportReport(dry_run=dry_run, errors=list(earlier_problems))
    async with transaction(db) as conn:
        all_skills = {r for row in rows for r in row.skill_ids}
        unknown = set(
            await skill_service.unknown_skill_ids(
                conn, tenant_id=principal.tenant_id, skill_ids=all_skills
            )
        )
        existing = await _current_versions(
            conn, principal.tenant_id, [row.item_id for row in rows if row.item_id]
        )
        plan = _plan(rows, unknown, existing, report)
        report.errors.sort(key=_row_order)
        if report.errors or dry_run:
            for action, row in plan:
                target = report.created if action == "create" else report.updated
                target.append(row.item_id or f"(new, row {row.row})")
            return report
        await _apply(conn, principal, plan, report, now=now)
        report.applied = True
    return report


async def _current_versions(conn: Queryable, tenant_id: str, item_ids: list[str]) -> dict[str, Any]:
    """The current version (kind, title, skill_ids, payload) of each existing item among
    ``item_ids``, by item id; ids with no item are absent."""
    return {
        r["item_id"]: r
        for r in await conn.fetch(
            """
            SELECT i.item_id, i.kind, v.title, v.skill_ids, v.payload
            FROM content_items i JOIN content_versions v
              ON v.tenant_id = i.tenant_id AND v.item_id = i.item_id
             AND v.version = i.current_version
            WHERE i.tenant_id = $1 AND i.item_id = ANY($2::text[])
            """,
            tenant_id,
            item_ids,
        )
    }


def _plan(
    rows: list[ImportRow],
    unknown_skills: set[str],
    existing: dict[str, Any],
    report: ImportReport,
) -> list[tuple[str, ImportRow]]:
    """What to do with each row: ``("create" | "update", row)`` in row order.

    A row naming an unknown skill, or changing an existing item's kind, goes to
    ``report.errors``; a row equal to the item's current version to ``report.unchanged``.
    """
    plan: list[tuple[str, ImportRow]] = []
    for row in rows:
        missing = sorted(set(row.skill_ids) & unknown_skills)
        if missing:
            report.errors.append(
                _problem(row.row, "skill_ids", f"unknown skills: {', '.join(missing)}")
            )
            continue
        current = existing.get(row.item_id or "")
        if current is None:
            plan.append(("create", row))
        elif current["kind"] != row.kind.value:
            report.errors.append(
                _problem(
                    row.row,
                    "kind",
                    f"item {row.item_id} is a {current['kind']}; kinds are fixed",
                )
            )
        elif (
            current["title"],
            sorted(current["skill_ids"]),
            json.loads(current["payload"]),
        ) == (row.title, sorted(set(row.skill_ids)), row.payload):
            report.unchanged.append(current["item_id"])
        else:
            plan.append(("update", row))
    return plan


async def _apply(
    conn: Queryable,
    principal: Principal,
    plan: list[tuple[str, ImportRow]],
    report: ImportReport,
    *,
    now: datetime,
) -> None:
    """Create or edit each planned item (inside the caller's transaction) and list the
    ids in ``report.created`` / ``report.updated``."""
    for action, row in plan:
        if action == "create":
            item = await content.create_item(
                conn,
                principal,
                item_id=row.item_id,
                kind=row.kind,
                title=row.title,
                skill_ids=list(row.skill_ids),
                payload=row.payload,
                now=now,
            )
            report.created.append(item.item_id)
        else:
            assert row.item_id is not None
            await content.edit_item(
                conn,
                principal,
                item_id=row.item_id,
                title=row.title,
                skill_ids=list(row.skill_ids),
                payload=row.payload,
                note=f"import row {row.row}",
                base_version=None,
                now=now,
            )
            report.updated.append(row.item_id)


def _row_order(problem: FieldProblem) -> tuple[int, str]:
    """Sort key of a problem: its row number (0 for the whole body), then its field."""
    match = _ROW_FIELD.match(problem.field)
    return (int(match[1]) if match else 0, problem.field)


def export_rows(items: list[content.ContentItem]) -> list[dict[str, Any]]:
    """The rows import reads, one per item, from the versions shown to the caller."""
    return [
        {
            "item_id": item.item_id,
            "kind": item.kind.value,
            "title": item.shown.title,
            "skill_ids": list(item.shown.skill_ids),
            "payload": item.shown.payload,
        }
        for item in items
    ]


def render(rows: list[dict[str, Any]], fmt: ImportFormat) -> str:
    """Export rows as a JSON array or as CSV (skill_ids ``a;b``, payload as JSON; every
    cell that a spreadsheet would run as a formula is quoted: :func:`neutralise_formula`)."""
    if fmt is ImportFormat.JSON:
        return json.dumps(rows, ensure_ascii=False, indent=1)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(FIXED_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {
            **row,
            "skill_ids": ";".join(row["skill_ids"]),
            "payload": json.dumps(row["payload"], ensure_ascii=False, sort_keys=True),
        }
        writer.writerow({k: neutralise_formula(str(v)) for k, v in cells.items()})
    return out.getvalue()
