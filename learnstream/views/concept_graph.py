"""``skill_prerequisites`` and ``concept_graph_versions``: each tenant's prerequisite graph.

Written by the CMS (:mod:`api.services.skills`); triggers bump the tenant's
``concept_graph_versions.version`` on every change, so readers that cache a graph
(the gaps and recommendations processors) reload it only when the version moved.
"""

from __future__ import annotations

from collections.abc import Sequence

from learnstream.db import Queryable

_GRAPH_VERSIONS = """
    SELECT tenant_id, version FROM concept_graph_versions WHERE tenant_id = ANY($1::text[])
"""
_GRAPH_EDGES = """
    SELECT skill_id, prerequisite_id FROM skill_prerequisites WHERE tenant_id = $1
    ORDER BY skill_id, prerequisite_id
"""


async def graph_versions(conn: Queryable, tenants: Sequence[str]) -> dict[str, int]:
    """Each tenant's graph version; 0 for a tenant without a row (no edge ever written)."""
    rows = await conn.fetch(_GRAPH_VERSIONS, list(tenants))
    found = {row["tenant_id"]: int(row["version"]) for row in rows}
    return {tenant: found.get(tenant, 0) for tenant in tenants}


async def load_requires(conn: Queryable, tenant_id: str) -> dict[str, list[str]]:
    """The tenant's graph as skill -> its direct prerequisites (skills without any absent).

    In a fixed order (by skill, then prerequisite), so whatever is derived from the
    lists does not depend on the order PostgreSQL happens to return the rows in.
    """
    requires: dict[str, list[str]] = {}
    for row in await conn.fetch(_GRAPH_EDGES, tenant_id):
        requires.setdefault(row["skill_id"], []).append(row["prerequisite_id"])
    return requires
