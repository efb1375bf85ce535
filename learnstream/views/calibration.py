"""``bkt_parameters`` and ``irt_item_parameters``: the fitted models the processors use.

Written by the fitting DAGs (:mod:`ml.jobs.bkt_fit`, :mod:`ml.jobs.irt_calibration`);
read by the learner-state and fraud processors, placement's item bank and the
learning reports. A skill without fitted BKT parameters uses
:data:`scheduler.bkt.DEFAULT_PARAMS`; an item without IRT parameters is not calibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from learnstream.db import Queryable
from scheduler.bkt import BKTParams


class ItemParams(NamedTuple):
    """One calibrated item on the logit metric: a > 0, b, c in [0, 1)."""

    a: float
    b: float
    c: float


def bkt_params_from_row(row: Any) -> BKTParams:
    """The BKT parameters of a ``bkt_parameters`` row (probabilities in [0, 1])."""
    return BKTParams(
        prior=row["prior"],
        learn=row["learn"],
        guess=row["guess"],
        slip=row["slip"],
        forget=row["forget"],
    )


def item_params_from_row(row: Any) -> ItemParams:
    """The IRT parameters of an ``irt_item_parameters`` row."""
    return ItemParams(row["a"], row["b"], row["c"])


_BKT_PARAMETERS = """
    SELECT tenant_id, skill_id, prior, learn, guess, slip, forget
    FROM bkt_parameters WHERE tenant_id = ANY($1::text[])
"""
_ALL_BKT_PARAMETERS = """
    SELECT tenant_id, skill_id, prior, learn, guess, slip, forget FROM bkt_parameters
"""
_ITEM_PARAMETERS = """
    SELECT tenant_id, item_id, a, b, c FROM irt_item_parameters WHERE tenant_id = ANY($1::text[])
"""
_ITEM_PARAMETERS_OF = """
    SELECT p.tenant_id, p.item_id, p.a, p.b, p.c
    FROM irt_item_parameters AS p
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, item_id)
      ON p.tenant_id = k.tenant_id AND p.item_id = k.item_id
"""


async def load_bkt(conn: Queryable, tenants: Sequence[str]) -> dict[str, dict[str, BKTParams]]:
    """tenant -> skill -> fitted parameters, for ``tenants`` (those with none are absent)."""
    found: dict[str, dict[str, BKTParams]] = {}
    for row in await conn.fetch(_BKT_PARAMETERS, list(tenants)):
        found.setdefault(row["tenant_id"], {})[row["skill_id"]] = bkt_params_from_row(row)
    return found


async def load_all_bkt(conn: Queryable) -> dict[tuple[str, str], BKTParams]:
    """(tenant, skill) -> fitted parameters, of every tenant."""
    return {
        (r["tenant_id"], r["skill_id"]): bkt_params_from_row(r)
        for r in await conn.fetch(_ALL_BKT_PARAMETERS)
    }


async def load_items(conn: Queryable, tenants: Sequence[str]) -> dict[str, dict[str, ItemParams]]:
    """tenant -> item -> calibrated parameters, for ``tenants``."""
    found: dict[str, dict[str, ItemParams]] = {}
    for row in await conn.fetch(_ITEM_PARAMETERS, list(tenants)):
        found.setdefault(row["tenant_id"], {})[row["item_id"]] = item_params_from_row(row)
    return found


async def load_items_of(
    conn: Queryable, items: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], ItemParams]:
    """(tenant, item) -> calibrated parameters, for the calibrated ones of ``items``."""
    rows = await conn.fetch(_ITEM_PARAMETERS_OF, [t for t, _ in items], [i for _, i in items])
    return {(r["tenant_id"], r["item_id"]): item_params_from_row(r) for r in rows}
