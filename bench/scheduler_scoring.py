"""Speed of candidate scoring, session selection, learning path and bandit choice.

Run: ``.venv/bin/python -m bench.scheduler_scoring [--candidates N]``.
Prints µs per call and writes ``bench/results/scheduler_scoring.json``. The target for
scoring is 1,000 candidates in under 5 ms per call. Candidates are simulated (seeded):
30 % with a review schedule, 20 % in a gap skill, 10 % on the learning path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from scheduler.bandit import BanditState, choose_strategy, record_reward
from scheduler.path import learning_path
from scheduler.scoring import Candidates, SessionConstraints, score_candidates, select_session

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler_scoring.json"


def simulated_candidates(n: int, n_skills: int, rng: np.random.Generator) -> Candidates:
    overdue = np.where(rng.random(n) < 0.3, rng.normal(0.0, 5.0, n), np.nan)
    seen = np.where(rng.random(n) < 0.5, rng.exponential(5.0, n), np.inf)
    return Candidates(
        item_ids=np.arange(n),
        skill_index=rng.integers(0, n_skills, n),
        difficulty=rng.normal(0.0, 1.0, n),
        discrimination=rng.uniform(0.5, 2.0, n),
        overdue_days=overdue,
        gap_severity=rng.random(n) * (rng.random(n) < 0.2),
        days_since_seen=seen,
        item_type=rng.integers(0, 4, n),
        expected_minutes=rng.uniform(0.5, 5.0, n),
        path_priority=rng.random(n) * (rng.random(n) < 0.1),
    )


def per_call_us(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, 95th percentile) µs per call over ``repeats`` timed calls after warm-up."""
    for _ in range(min(repeats, 50)):
        call()
    samples = np.empty(repeats)
    for k in range(repeats):
        started = time.perf_counter()
        call()
        samples[k] = time.perf_counter() - started
    return float(np.median(samples) * 1e6), float(np.percentile(samples, 95) * 1e6)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=2_000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(7)
    n_skills = 50
    candidates = simulated_candidates(args.candidates, n_skills, rng)
    ability = rng.normal(0.0, 1.0, n_skills)
    constraints = SessionConstraints(
        time_budget_minutes=30, max_items=20, max_items_per_skill=3, max_items_per_type=8
    )
    skills = [f"skill-{k:03d}" for k in range(200)]
    prerequisites = {
        s: [skills[j] for j in rng.choice(k, size=min(k, 2), replace=False)]
        for k, s in enumerate(skills)
    }
    bandit = BanditState()
    for k in range(300):
        bandit = record_reward(bandit, f"b{k % 9}", choose_strategy(bandit, f"b{k % 9}", rng), 0.1)

    figures = {
        f"score_candidates_{args.candidates}": per_call_us(
            lambda: score_candidates(candidates, ability), args.repeats
        ),
        f"select_session_{args.candidates}_20_picks": per_call_us(
            lambda: select_session(candidates, ability, constraints), max(args.repeats // 10, 50)
        ),
        "learning_path_200_skills": per_call_us(
            lambda: learning_path(skills, prerequisites, mastered=set(skills[:50])), 500
        ),
        "bandit_choose_strategy": per_call_us(
            lambda: choose_strategy(bandit, "b1", rng), args.repeats
        ),
        "bandit_record_reward": per_call_us(
            lambda: record_reward(bandit, "b1", choose_strategy(bandit, "b1", rng), 0.2),
            args.repeats,
        ),
    }
    picks = select_session(candidates, ability, constraints)
    print(f"{'operation':<36} {'median µs':>10} {'p95 µs':>10}")
    for name, (median, p95) in figures.items():
        print(f"{name:<36} {median:>10.1f} {p95:>10.1f}")
    target_ms = 5.0
    scoring_median = figures[f"score_candidates_{args.candidates}"][0]
    print(
        f"\nscoring target: < {target_ms} ms per call; "
        f"measured median {scoring_median / 1000:.3f} ms"
    )
    reasons = {str(r): sum(p.reason == r for p in picks) for r in {p.reason for p in picks}}
    minutes = sum(p.expected_minutes for p in picks)
    print(f"session: {len(picks)} picks, {minutes:.1f} min, reasons {reasons}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "candidates": args.candidates,
                "us_per_call": {k: {"median": m, "p95": p} for k, (m, p) in figures.items()},
                "scoring_target_ms": target_ms,
                "session_picks": len(picks),
                "session_reasons": reasons,
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "measured_at": datetime.now(UTC).isoformat(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
