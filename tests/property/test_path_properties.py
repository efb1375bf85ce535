"""Learning paths respect every prerequisite; cycles are always reported, and real."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.exceptions import PrerequisiteCycleError
from scheduler.path import learning_path


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """Skills in a hidden random order; edges only go from earlier to later ones."""
    n = draw(st.integers(1, 25))
    names = draw(st.permutations([f"s{k:02d}" for k in range(n)]))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))
    requires: dict[str, list[str]] = {name: [] for name in names}
    for a, b in edges:
        if a < b:
            requires[names[b]].append(names[a])
    return names, requires


@given(dags(), st.data())
def test_path_respects_every_prerequisite(
    graph: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    names, requires = graph
    mastered = set(data.draw(st.lists(st.sampled_from(names), unique=True)))
    path = learning_path(names, requires, mastered)
    assert sorted(path) == sorted(set(names) - mastered)
    position = {skill: k for k, skill in enumerate(path)}

    def ancestors(skill: str) -> set[str]:
        found: set[str] = set()
        stack = list(requires[skill])
        while stack:
            prerequisite = stack.pop()
            if prerequisite not in found:
                found.add(prerequisite)
                stack.extend(requires[prerequisite])
        return found

    for skill in path:  # transitive: also through mastered skills
        for prerequisite in ancestors(skill) & position.keys():
            assert position[prerequisite] < position[skill]


@given(dags(), st.data())
def test_back_edge_gives_a_real_cycle(
    graph: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    names, requires = graph
    skill = data.draw(st.sampled_from(names))
    if requires[skill]:
        # Its first prerequisite now requires it too: a cycle through both.
        requires[requires[skill][0]].append(skill)
    else:
        requires[skill].append(skill)  # a self-loop
    with pytest.raises(PrerequisiteCycleError) as caught:
        learning_path(names, requires)
    cycle = caught.value.cycle
    assert cycle[0] == cycle[-1]
    assert len(cycle) >= 2
    for before, after in itertools.pairwise(cycle):
        assert before in requires[after]
