"""Our BKT EM against pyBKT 1.4.3 (compiled) on a slice of real data (3 mid-sized skills).

Proves, on the same answers grouped the same way: our forward filter run on pyBKT's
fitted parameters reproduces pyBKT's predictions; our bounded fit's test AUC is
within 0.005 of pyBKT's; our EM, bounded like pyBKT, reaches at least pyBKT's
likelihood; and our parameters are close to pyBKT's (median over the skills where
pyBKT's fit is not degenerate). Full-data figures: ``python -m bench.scheduler_bkt``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scheduler_bkt import Split, compare, load_dkvmn, load_piech

# Skills ranked 10th to 12th by train answers: real-sized, yet seconds to fit.
RANKS = range(10, 13)


@pytest.fixture(scope="module")
def splits(shared_data: Path) -> dict[str, Split]:
    return {
        "dkvmn": load_dkvmn(RANKS, shared_data),
        "piech": load_piech(RANKS, shared_data),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "forgets"), [("dkvmn", False), ("dkvmn", True), ("piech", False)]
)
def test_matches_pybkt_on_a_slice(splits: dict[str, Split], dataset: str, forgets: bool) -> None:
    row = compare(splits[dataset], forgets)
    pybkt, ours, loose = row.models["pybkt"], row.models["ours"], row.models["ours_loose"]

    assert row.skills == len(RANKS)
    assert row.replay_max_abs_diff < 1e-9
    assert abs(ours.test_auc - pybkt.test_auc) <= 0.005
    assert loose.train_log_likelihood >= pybkt.train_log_likelihood - 0.5
    gaps = ours.param_gap_nondegenerate_skills
    assert gaps is not None
    for name, gap in gaps.items():
        assert gap["median"] <= 0.05, name
