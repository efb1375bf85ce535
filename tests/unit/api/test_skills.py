"""The prerequisite-graph rule: an edit that closes a cycle is found, and the cycle named."""

from __future__ import annotations

import itertools

import pytest

from api.services.skills import cycle_after_edit

CHAIN = {"ratios": ["fractions"], "percent": ["ratios"], "fractions": []}


def test_acyclic_edit_has_no_cycle() -> None:
    assert (
        cycle_after_edit(CHAIN, skill_id="percent", prerequisites=["ratios", "fractions"]) is None
    )


def test_closing_a_long_cycle_names_every_skill_on_it() -> None:
    cycle = cycle_after_edit(CHAIN, skill_id="fractions", prerequisites=["percent"])
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"fractions", "ratios", "percent"}
    # Each skill is a prerequisite of the next one.
    for earlier, later in itertools.pairwise(cycle):
        assert earlier in ({**CHAIN, "fractions": ["percent"]}[later])


def test_edit_replaces_the_skills_old_prerequisites() -> None:
    # ratios no longer requiring fractions makes fractions -> ratios legal.
    graph = {"ratios": ["fractions"], "fractions": []}
    assert cycle_after_edit(graph, skill_id="ratios", prerequisites=[]) is None
    assert cycle_after_edit(graph, skill_id="fractions", prerequisites=["ratios"]) is not None


@pytest.mark.parametrize("size", [2, 5, 50])
def test_ring_of_any_size_is_found(size: int) -> None:
    ring = {f"s{i}": [f"s{i + 1}"] for i in range(size - 1)}
    cycle = cycle_after_edit(ring, skill_id=f"s{size - 1}", prerequisites=["s0"])
    assert cycle is not None
    assert len(cycle) == size + 1
