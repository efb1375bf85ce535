"""``learner_ability``: each learner's IRT ability posterior on its quadrature grid.

Written by the learner-state processor (one EAP step per calibrated answer) and by
placement (its answers are evidence like any other); read by the dashboards and the
hot cache. The posterior is stored as its log density on the grid of the
``N(prior_mean, prior_sd)`` prior with ``cardinality(log_density)`` points, shifted
to a maximum of 0, so each answer costs O(grid) and a stored posterior reads back
bit-identical (:func:`density_literal`). Rows carry a ``version`` (:mod:`.versioned`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from learnstream.db import Queryable
from learnstream.views.versioned import VersionedView, by_key
from scheduler import irt

# The grid a learner without a row starts from. Placement and the learner-state
# processor both start here, so later answers continue on the same grid.
DEFAULT_PRIOR = irt.NormalPrior()

L = TypeVar("L", bound=tuple[str, str])  # a learner key: (tenant_id, user_id)


@dataclass(frozen=True, slots=True)
class AbilityState:
    """One row of ``learner_ability`` (what an update needs)."""

    posterior: irt.AbilityPosterior
    prior: irt.NormalPrior
    estimate: irt.AbilityEstimate  # EAP ability and SE in logits
    last_event_id: str
    last_attempt_at: datetime  # UTC


ABILITY_VIEW = VersionedView(
    "learner_ability",
    keys=(("tenant_id", "text"), ("user_id", "text")),
    values=(
        ("ability", "float8"),
        ("ability_se", "float8"),
        ("n_responses", "int"),
        ("prior_mean", "float8"),
        ("prior_sd", "float8"),
        # One text per row: unnest() would flatten a two-dimensional float8 array.
        ("log_density", "text"),
        ("last_event_id", "uuid"),
        ("last_attempt_at", "timestamptz"),
    ),
    casts={"log_density": "float8[]"},
)

_LOCK_ABILITY = """
    SELECT a.tenant_id, a.user_id, a.ability, a.ability_se, a.n_responses, a.prior_mean,
           a.prior_sd, a.log_density, a.last_event_id, a.last_attempt_at, a.version
    FROM learner_ability AS a
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, user_id) USING (tenant_id, user_id)
    ORDER BY a.tenant_id, a.user_id
    FOR UPDATE OF a
"""


def ability_from_row(row: Any) -> AbilityState:
    """The stored posterior (on the grid of its stored prior) and summary of a row."""
    density = np.asarray(row["log_density"], dtype=np.float64)
    prior = irt.NormalPrior(mean=row["prior_mean"], sd=row["prior_sd"], n_points=density.size)
    points, _ = irt.quadrature(prior)
    return AbilityState(
        posterior=irt.AbilityPosterior(points, density, row["n_responses"]),
        prior=prior,
        estimate=irt.AbilityEstimate(row["ability"], row["ability_se"]),
        last_event_id=str(row["last_event_id"]),
        last_attempt_at=row["last_attempt_at"],
    )


async def lock_abilities(
    conn: Queryable, learners: Sequence[L]
) -> tuple[dict[L, AbilityState], dict[L, int]]:
    """Read (``FOR UPDATE``) the rows of ``learners``; their states and versions.

    The results are keyed by the caller's own key objects.
    """
    wanted = by_key(sorted(set(learners)))
    states: dict[L, AbilityState] = {}
    versions: dict[L, int] = {}
    if not wanted:
        return states, versions
    columns = list(zip(*wanted, strict=True))
    for row in await conn.fetch(_LOCK_ABILITY, *columns):
        learner = wanted[(row["tenant_id"], row["user_id"])]
        states[learner] = ability_from_row(row)
        versions[learner] = int(row["version"])
    return states, versions


def ability_row(learner: tuple[str, str], state: AbilityState) -> tuple[object, ...]:
    """``state`` as the key and value columns of :data:`ABILITY_VIEW`."""
    return (
        *learner,
        state.estimate.ability,
        state.estimate.ability_se,
        state.posterior.n_responses,
        state.prior.mean,
        state.prior.sd,
        density_literal(state.posterior.log_density),
        state.last_event_id,
        state.last_attempt_at,
    )


def density_literal(values: npt.NDArray[np.float64]) -> str:
    """The PostgreSQL array literal of a log density.

    repr() of a Python float is the shortest text that reads back to the same double,
    so the stored posterior is bit-identical to the computed one.
    """
    return "{" + ",".join(map(repr, values.tolist())) + "}"


# The learner cache's read of current rows (with their versions), keyed by
# (tenant_id, user_id) arrays.
CACHE_READ = """
    SELECT a.tenant_id, a.user_id, a.ability, a.ability_se, a.n_responses, a.version
    FROM learner_ability AS a
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, user_id) USING (tenant_id, user_id)
"""
_LEARNER_ABILITY = """
    SELECT ability, ability_se, n_responses FROM learner_ability
    WHERE tenant_id = $1 AND user_id = $2
"""


async def learner_ability(db: Queryable, *, tenant_id: str, user_id: str) -> Any | None:
    """One learner's ability (logits), ability_se (logits) and n_responses; None if none."""
    return await db.fetchrow(_LEARNER_ABILITY, tenant_id, user_id)
