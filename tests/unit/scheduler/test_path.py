"""Learning path order, tie-breaking and cycle errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scheduler.exceptions import PrerequisiteCycleError, SchedulerError
from scheduler.path import find_cycle, learning_path, path_priority, topological_order

# fractions needs integers; decimals need fractions; percentages need decimals and ratios.
CURRICULUM = {
    "fractions": ["integers"],
    "decimals": ["fractions"],
    "ratios": ["fractions"],
    "percentages": ["decimals", "ratios"],
}


def test_prerequisites_come_first_and_ties_break_by_id() -> None:
    order = topological_order(["percentages"], CURRICULUM)
    assert order == ["integers", "fractions", "decimals", "ratios", "percentages"]


def test_mastered_skills_are_left_out_but_still_order_the_rest() -> None:
    path = learning_path(CURRICULUM, CURRICULUM, mastered={"integers", "fractions"})
    assert path == ["decimals", "ratios", "percentages"]


def test_tie_key_changes_only_the_order_among_ready_skills() -> None:
    difficulty = {"decimals": 2, "ratios": 1}
    path = learning_path(
        CURRICULUM, CURRICULUM, mastered={"integers"}, tie_key=lambda s: difficulty.get(s, 0)
    )
    assert path == ["fractions", "ratios", "decimals", "percentages"]


def test_unrelated_skills_are_ordered_by_id() -> None:
    assert learning_path(["b", "c", "a"], {}) == ["a", "b", "c"]


def test_cycle_error_names_the_cycle_in_prerequisite_order() -> None:
    graph = {**CURRICULUM, "integers": ["percentages"]}
    with pytest.raises(PrerequisiteCycleError) as caught:
        learning_path(graph, graph)
    cycle = caught.value.cycle
    assert cycle[0] == cycle[-1]
    for prerequisite, skill in itertools.pairwise(cycle):
        assert prerequisite in graph[skill]
    assert " -> ".join(cycle) in str(caught.value)
    assert isinstance(caught.value, SchedulerError)


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(PrerequisiteCycleError, match="a -> a"):
        learning_path(["a"], {"a": ["a"]})
    assert find_cycle({"a": ["b"], "b": []}) is None


def test_path_priority_decays_along_the_path() -> None:
    priority = path_priority(["decimals", "ratios"], ["ratios", "integers", "decimals"], horizon=2)
    assert priority == pytest.approx(np.array([0.5, 0.0, 1.0]))
