"""The recommendations processor's view of the catalog: each tenant's published content
and prerequisite graph, read through a cache.

Published content (``published_content`` with the IRT ``a``, ``b`` of
``irt_item_parameters``) is cached per tenant and reloaded when the fingerprint of
``content_items`` and ``irt_item_parameters`` (row count, latest update) changes, or
after ``processor_cache_ttl_s``; the fingerprint query runs once per batch for all the
batch's tenants. The concept graph is cached by its ``concept_graph_versions``
version. Both are read-through caches of database state, tagged with what they were
read at, so the processor's apply() still keeps no state of its own between calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from learnstream.views import concept_graph as graph_view
from scheduler.gaps import ConceptGraph
from scheduler.recommend import DEFAULT_MINUTES, ContentItem

_CONTENT_FINGERPRINTS = """
    SELECT t.tenant_id,
           (SELECT count(*) FROM content_items c WHERE c.tenant_id = t.tenant_id) AS items,
           (SELECT max(updated_at) FROM content_items c WHERE c.tenant_id = t.tenant_id)
               AS items_at,
           (SELECT count(*) FROM irt_item_parameters p WHERE p.tenant_id = t.tenant_id)
               AS calibrated,
           (SELECT max(calibrated_at) FROM irt_item_parameters p
             WHERE p.tenant_id = t.tenant_id) AS calibrated_at
    FROM unnest($1::text[]) AS t(tenant_id)
"""
_PUBLISHED_CONTENT = """
    SELECT pc.item_id, pc.kind, pc.title, pc.skill_ids, pc.payload, p.a, p.b
    FROM published_content AS pc
    LEFT JOIN irt_item_parameters AS p ON p.tenant_id = pc.tenant_id AND p.item_id = pc.item_id
    WHERE pc.tenant_id = $1
    ORDER BY pc.item_id
"""


@dataclass(frozen=True, slots=True)
class TenantContent:
    """A tenant's published catalog and prerequisite graph."""

    catalog: Sequence[ContentItem]
    requires: Mapping[str, Sequence[str]]
    graph: ConceptGraph


def content_item(row: Mapping[str, Any]) -> ContentItem:
    """A published_content row (with IRT a, b when calibrated) as a ContentItem."""
    payload = row["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else (payload or {})
    minutes = payload.get("expected_minutes") if isinstance(payload, dict) else None
    if not isinstance(minutes, int | float) or not minutes > 0:
        minutes = DEFAULT_MINUTES.get(row["kind"], 5.0)
    return ContentItem(
        item_id=row["item_id"],
        kind=row["kind"],
        title=row["title"],
        skill_ids=tuple(row["skill_ids"]),
        difficulty=float(row["b"]) if row["b"] is not None else 0.0,
        discrimination=float(row["a"]) if row["a"] is not None else 1.0,
        expected_minutes=float(minutes),
    )


class ContentCache:
    """Each tenant's :class:`TenantContent`, reloaded only when it changed."""

    def __init__(self, ttl_s: float) -> None:
        # tenant -> (fingerprint, time.monotonic() of the load, catalog)
        self._catalogs: dict[str, tuple[tuple[Any, ...], float, tuple[ContentItem, ...]]] = {}
        # A catalog is also reloaded after this long (s), in case an edit left the
        # fingerprint unchanged (two API hosts writing updated_at with skewed clocks).
        self._ttl_s = ttl_s
        self._graphs: dict[str, tuple[int, dict[str, list[str]], ConceptGraph]] = {}

    async def current(
        self, conn: asyncpg.Connection, tenants: list[str]
    ) -> dict[str, TenantContent]:
        """Each tenant's published catalog and graph, reloaded only when they changed."""
        fingerprints = {
            r["tenant_id"]: (r["items"], r["items_at"], r["calibrated"], r["calibrated_at"])
            for r in await conn.fetch(_CONTENT_FINGERPRINTS, tenants)
        }
        versions = await graph_view.graph_versions(conn, tenants)
        content: dict[str, TenantContent] = {}
        for tenant in tenants:
            fingerprint = fingerprints.get(tenant, ())
            cached = self._catalogs.get(tenant)
            now = time.monotonic()
            if cached is None or cached[0] != fingerprint or now - cached[1] > self._ttl_s:
                rows = await conn.fetch(_PUBLISHED_CONTENT, tenant)
                self._catalogs[tenant] = (fingerprint, now, tuple(content_item(r) for r in rows))
            version = versions[tenant]
            graph = self._graphs.get(tenant)
            if graph is None or graph[0] != version:
                requires = await graph_view.load_requires(conn, tenant)
                self._graphs[tenant] = (version, requires, ConceptGraph(requires, version))
            _, requires, concept_graph = self._graphs[tenant]
            content[tenant] = TenantContent(self._catalogs[tenant][2], requires, concept_graph)
        return content
