"""Learning path: the learner's unmastered skills in an order that respects prerequisites.

The prerequisite graph maps each skill to the skills it requires. The path is a
topological order of the *whole* graph (Kahn's algorithm), prerequisites first, with
ties between skills that are ready at the same time broken by a deterministic key (the
skill id by default), and then filtered to the unmastered skills. Ordering the whole
graph first keeps transitive constraints through mastered skills: if A is required by
a mastered B which is required by C, A still comes before C.

A cycle makes a path impossible; :class:`~scheduler.exceptions.PrerequisiteCycleError`
names the skills on one cycle so the content author can break it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.exceptions import PrerequisiteCycleError


def _graph(
    skills: Iterable[str], prerequisites: Mapping[str, Iterable[str]]
) -> dict[str, list[str]]:
    """skill -> sorted, de-duplicated prerequisites, over every skill mentioned anywhere."""
    requires: dict[str, set[str]] = {skill: set() for skill in skills}
    for skill, required in prerequisites.items():
        requires.setdefault(skill, set()).update(required)
        for prerequisite in required:
            requires.setdefault(prerequisite, set())
    return {skill: sorted(required) for skill, required in requires.items()}


def find_cycle(requires: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, each skill a prerequisite of the next; None if acyclic.

    Iterative depth-first search, deterministic: nodes and edges visited in sorted order.
    """
    on_stack: dict[str, int] = {}
    done: set[str] = set()
    for root in sorted(requires):
        if root in done:
            continue
        path: list[str] = [root]
        on_stack[root] = 0
        edges = [iter(requires.get(root, ()))]
        while edges:
            node = path[-1]
            nxt = next(edges[-1], None)
            if nxt is None:
                edges.pop()
                path.pop()
                del on_stack[node]
                done.add(node)
                continue
            if nxt in on_stack:
                # path[i] requires path[i+1]; reverse so that each skill is a prerequisite
                # of the next one, which is how the error message reads.
                cycle = [*path[on_stack[nxt] :], nxt]
                return cycle[::-1]
            if nxt not in done:
                on_stack[nxt] = len(path)
                path.append(nxt)
                edges.append(iter(requires.get(nxt, ())))
    return None


def topological_order(
    skills: Iterable[str],
    prerequisites: Mapping[str, Iterable[str]],
    tie_key: Callable[[str], Any] | None = None,
) -> list[str]:
    """Every skill (listed or mentioned as a prerequisite), prerequisites first.

    Among skills whose prerequisites are all placed, the smallest ``tie_key(skill)``
    (default: the id) goes first, so the order is reproducible. Raises
    :class:`PrerequisiteCycleError` naming a cycle. O((V + E) log V).
    """
    key = tie_key or (lambda skill: skill)
    requires = _graph(skills, prerequisites)
    unmet = {skill: len(required) for skill, required in requires.items()}
    unlocks: dict[str, list[str]] = {skill: [] for skill in requires}
    for skill, required in requires.items():
        for prerequisite in required:
            unlocks[prerequisite].append(skill)
    ready = [(key(skill), skill) for skill, count in unmet.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, skill = heapq.heappop(ready)
        order.append(skill)
        for dependent in unlocks[skill]:
            unmet[dependent] -= 1
            if unmet[dependent] == 0:
                heapq.heappush(ready, (key(dependent), dependent))
    if len(order) < len(requires):
        placed = set(order)
        cycle = find_cycle({s: r for s, r in requires.items() if s not in placed})
        assert cycle is not None  # Kahn's algorithm stalls only on a cycle
        raise PrerequisiteCycleError(cycle)
    return order


def learning_path(
    skills: Iterable[str],
    prerequisites: Mapping[str, Iterable[str]],
    mastered: Collection[str] = frozenset(),
    tie_key: Callable[[str], Any] | None = None,
) -> list[str]:
    """The unmastered skills in learning order (prerequisites first, ties by ``tie_key``).

    ``prerequisites[s]`` lists the skills ``s`` requires; skills that appear only as
    prerequisites are part of the graph too. ``mastered`` skills are left out of the
    path but still order the others.
    """
    return [s for s in topological_order(skills, prerequisites, tie_key) if s not in mastered]


def path_priority(
    path: Sequence[str], skill_ids: Sequence[str], horizon: int = 3
) -> npt.NDArray[np.float64]:
    """Per-skill priority in [0, 1] for :class:`scheduler.scoring.Candidates`.

    ``skill_ids[k]`` is the skill with index ``k``; the first skill on ``path`` gets 1,
    the next ``1 - 1/horizon``, ... down to 0 from position ``horizon`` on and for
    skills not on the path. Index it with ``Candidates.skill_index``.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    position = {skill: rank for rank, skill in enumerate(path)}
    ranks = np.array([position.get(skill, horizon) for skill in skill_ids], dtype=np.float64)
    return np.clip(1.0 - ranks / horizon, 0.0, 1.0)
