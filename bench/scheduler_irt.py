"""IRT and CAT benchmarks: speed, calibration recovery, and a CAT comparison with catsim.

Run: ``.venv/bin/python -m bench.scheduler_irt [--examinees N] [--quick]``.
Prints tables and writes ``bench/results/scheduler_irt.json``.

The catsim comparison gives both implementations the same item bank, the same
examinees and the same answers: each examinee's answer to each item is fixed in advance
(``uniform < P(correct | true ability)``), so a difference in items used or in error
comes from selection and estimation, never from luck in the answers. Both stop when
their SE is below the target or at ``max_items``. catsim is run as its documented
standard CAT: start at 0, maximum-information (or randomesque) selection, ML estimation
by bounded search with Dodd's rule for all-right/all-wrong patterns, and SE =
1/sqrt(test information at the estimate). Ours uses the EAP ability and its posterior SD
with a N(0, 1) prior, which matches the examinees' distribution.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scheduler import cat, irt

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler_irt.json"
SKILLS = ("algebra", "fractions", "geometry", "ratios")


def make_bank(n_items: int, rng: np.random.Generator, guessing: bool = False) -> cat.CatBank:
    """A simulated calibrated bank: a ~ lognormal around 1.2, b ~ N(0, 1.2), skills round-robin."""
    a = np.clip(rng.lognormal(np.log(1.2), 0.3, n_items), 0.4, 3.0)
    b = rng.normal(0.0, 1.2, n_items)
    c = rng.uniform(0.0, 0.25, n_items) if guessing else np.zeros(n_items)
    skills = tuple(SKILLS[i % len(SKILLS)] for i in range(n_items))
    return cat.CatBank(irt.ItemBank(a, b, c), skills)


@dataclass(frozen=True, slots=True)
class CatRun:
    """Summary of one CAT method over all examinees."""

    method: str
    mean_items: float
    rmse: float
    bias: float
    share_se_reached: float  # examinees stopped by the SE rule rather than max_items
    ms_per_examinee: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "mean_items": self.mean_items,
            "rmse": self.rmse,
            "bias": self.bias,
            "share_se_reached": self.share_se_reached,
            "ms_per_examinee": self.ms_per_examinee,
        }


def _summarise(
    method: str,
    true_ability: np.ndarray,
    estimates: list[float],
    lengths: list[int],
    stopped_by_se: int,
    seconds: float,
) -> CatRun:
    error = np.asarray(estimates) - true_ability
    return CatRun(
        method=method,
        mean_items=float(np.mean(lengths)),
        rmse=float(np.sqrt(np.mean(error**2))),
        bias=float(np.mean(error)),
        share_se_reached=stopped_by_se / len(lengths),
        ms_per_examinee=1000.0 * seconds / len(lengths),
    )


def run_ours(
    bank: cat.CatBank,
    true_ability: np.ndarray,
    answers: np.ndarray,
    *,
    se_target: float,
    max_items: int,
    randomesque_k: int,
    seed: int,
) -> CatRun:
    """Our CAT (EAP, max information, randomesque k) on pre-drawn answers."""
    config = cat.CatConfig(
        se_target=se_target, min_items=1, max_items=max_items, randomesque_k=randomesque_k
    )
    rng = np.random.default_rng(seed)
    estimates, lengths, by_se = [], [], 0
    started = time.perf_counter()
    for row in answers:
        placement = cat.administer(bank, config, row, rng)
        estimates.append(placement.ability)
        lengths.append(placement.n_items)
        by_se += placement.stop_reason is cat.StopReason.SE_REACHED
    seconds = time.perf_counter() - started
    name = "ours EAP max-info" if randomesque_k == 1 else f"ours EAP randomesque-{randomesque_k}"
    return _summarise(name, true_ability, estimates, lengths, by_se, seconds)


def run_catsim(
    bank: cat.CatBank,
    true_ability: np.ndarray,
    answers: np.ndarray,
    *,
    se_target: float,
    max_items: int,
    randomesque_k: int,
    seed: int,
) -> CatRun:
    """catsim's components (standalone, no Simulator) on the same pre-drawn answers."""
    from catsim.estimation import NumericalSearchEstimator
    from catsim.item_bank import ItemBank as CatsimBank
    from catsim.selection import MaxInfoSelector, RandomesqueSelector
    from catsim.stopping import MinErrorStopper

    params = np.column_stack([bank.items.a, bank.items.b, bank.items.c, np.ones(bank.n_items)])
    with contextlib.redirect_stdout(io.StringIO()):  # catsim prints its (empty) validation
        catsim_bank = CatsimBank(params)
    selector = MaxInfoSelector() if randomesque_k == 1 else RandomesqueSelector(randomesque_k)
    estimator = NumericalSearchEstimator()  # bounded search, Dodd's rule on
    stopper = MinErrorStopper(se_target, max_items=max_items)
    rng = np.random.default_rng(seed)
    estimates, lengths, by_se = [], [], 0
    started = time.perf_counter()
    for row in answers:
        theta = 0.0
        given: list[int] = []
        responses: list[bool] = []
        while not stopper.stop(
            _item_bank=catsim_bank, administered_items=params[given], theta=theta
        ):
            item = selector.select(
                item_bank=catsim_bank, administered_items=given, est_theta=theta, rng=rng
            )
            if item is None:
                break
            given.append(int(item))
            responses.append(bool(row[item]))
            theta = float(
                estimator.estimate(
                    item_bank=catsim_bank,
                    administered_items=given,
                    response_vector=responses,
                    est_theta=theta,
                )
            )
        estimates.append(theta)
        lengths.append(len(given))
        by_se += len(given) < max_items
    seconds = time.perf_counter() - started
    name = "catsim ML max-info" if randomesque_k == 1 else f"catsim ML randomesque-{randomesque_k}"
    return _summarise(name, true_ability, estimates, lengths, by_se, seconds)


def compare_with_catsim(
    n_examinees: int,
    *,
    n_items: int = 500,
    se_target: float = 0.3,
    max_items: int = 60,
    randomesque_k: int = 1,
    guessing: bool = False,
    seed: int = 2024,
) -> tuple[CatRun, CatRun]:
    """(ours, catsim) on one simulated bank, N(0, 1) examinees and fixed answers."""
    rng = np.random.default_rng(seed)
    bank = make_bank(n_items, rng, guessing=guessing)
    true_ability = rng.normal(0.0, 1.0, n_examinees)
    answers = rng.random((n_examinees, n_items)) < irt.bank_p_correct(bank.items, true_ability)
    runs = tuple(
        run(
            bank,
            true_ability,
            answers,
            se_target=se_target,
            max_items=max_items,
            randomesque_k=randomesque_k,
            seed=seed + 1,
        )
        for run in (run_ours, run_catsim)
    )
    return runs[0], runs[1]


def _per_call_us(function: Callable[[], object], min_seconds: float = 0.3) -> float:
    """Median over 5 rounds of the mean µs per call (each round ≥ min_seconds / 5)."""
    function()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds / 5:
        function()
        calls += 1
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        rounds.append((time.perf_counter() - started) / calls)
    return float(np.median(rounds) * 1e6)


def speed(seed: int = 11) -> dict[str, float]:
    """µs per EAP step, per item selection over 1,000 items; calibration seconds."""
    rng = np.random.default_rng(seed)
    bank = make_bank(1000, rng, guessing=True)
    items = rng.choice(1000, size=20, replace=False)
    scores = rng.integers(0, 2, size=20).astype(np.float64)
    posterior = irt.posterior_for(bank.items, items[:19], scores[:19])
    a, b, c = bank.items.a[items[19]], bank.items.b[items[19]], bank.items.c[items[19]]

    def incremental() -> None:
        irt.summarize(irt.update_posterior(posterior, a, b, c, scores[19]))

    figures = {
        "eap_incremental_step_us": _per_call_us(incremental),
        "eap_from_20_answers_us": _per_call_us(lambda: irt.estimate_eap(bank.items, items, scores)),
        "map_from_20_answers_us": _per_call_us(lambda: irt.estimate_map(bank.items, items, scores)),
    }
    state = cat.start(cat.CatConfig(max_items=40, randomesque_k=5))
    balanced = cat.start(
        cat.CatConfig.with_targets(dict.fromkeys(SKILLS, 0.25), max_items=40, randomesque_k=5)
    )
    for item, score in zip(items[:10], scores[:10], strict=True):
        state = cat.record_answer(state, int(item), bool(score))
        balanced = cat.record_answer(balanced, int(item), bool(score))
    select_rng = np.random.default_rng(seed)
    figures["next_item_1000_bank_us"] = _per_call_us(lambda: cat.next_item(state, bank, select_rng))
    figures["next_item_1000_bank_balanced_us"] = _per_call_us(
        lambda: cat.next_item(balanced, bank, select_rng)
    )
    figures["state_json_roundtrip_us"] = _per_call_us(
        lambda: cat.CatState.from_dict(json.loads(json.dumps(state.to_dict())))
    )
    return figures


def calibration(n_learners: int, n_items: int, model: irt.Model, seed: int = 5) -> dict[str, Any]:
    """Seconds to calibrate n_learners × n_items (10% missing) and parameter recovery."""
    rng = np.random.default_rng(seed)
    a = np.clip(rng.lognormal(np.log(1.2), 0.3, n_items), 0.4, 3.0)
    b = rng.normal(0.0, 1.0, n_items)
    c = rng.uniform(0.05, 0.25, n_items) if model == "3PL" else np.zeros(n_items)
    truth = irt.ItemBank(a, b, c)
    ability = rng.normal(size=n_learners)
    responses = irt.simulate_responses(truth, ability, rng)
    responses[rng.random(responses.shape) < 0.1] = np.nan
    started = time.perf_counter()
    fitted = irt.calibrate(responses, model=model)
    seconds = time.perf_counter() - started
    return {
        "model": model,
        "learners": n_learners,
        "items": n_items,
        "seconds": seconds,
        "iterations": fitted.n_iterations,
        "converged": fitted.converged,
        "corr_a": float(np.corrcoef(a, fitted.bank.a)[0, 1]),
        "corr_b": float(np.corrcoef(b, fitted.bank.b)[0, 1]),
        "rmse_b": float(np.sqrt(np.mean((fitted.bank.b - b) ** 2))),
        "corr_c": float(np.corrcoef(c, fitted.bank.c)[0, 1]) if model == "3PL" else None,
        "corr_ability": float(np.corrcoef(ability, fitted.ability)[0, 1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examinees", type=int, default=1000, help="examinees per CAT scenario")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    n_examinees = 50 if args.quick else args.examinees

    figures = speed()
    print("\nIRT / CAT speed (µs per call, median of 5 rounds)")
    for name, value in figures.items():
        print(f"  {name:34s} {value:10.1f}")

    sizes = [(500, 50)] if args.quick else [(2000, 100)]
    fits = [calibration(n, j, model) for n, j in sizes for model in ("2PL", "3PL")]
    print("\nCalibration (MML-EM, 10% missing)")
    print(f"  {'model':5s} {'size':>10s} {'s':>7s} {'iter':>5s}", end="")
    print(f" {'corr a':>7s} {'corr b':>7s} {'corr c':>7s}")
    for fit in fits:
        corr_c = "" if fit["corr_c"] is None else f"{fit['corr_c']:.3f}"
        size = f"{fit['learners']}x{fit['items']}"
        print(
            f"  {fit['model']:5s} {size:>10s} {fit['seconds']:7.2f} {fit['iterations']:5d}"
            f" {fit['corr_a']:7.3f} {fit['corr_b']:7.3f} {corr_c:>7s}"
        )

    # (label, bank with guessing?, randomesque k, SE target, max items). Variable length:
    # stop at SE < 0.3 (items used is the figure). Fixed length: an unreachable SE target,
    # so both give exactly max_items and RMSE at equal length is the figure.
    scenarios = [
        ("2PL", False, 1, 0.3, 60),
        ("2PL", False, 5, 0.3, 60),
        ("3PL", True, 1, 0.3, 60),
        ("2PL", False, 1, 1e-6, 10),
        ("2PL", False, 1, 1e-6, 20),
    ]
    comparisons: list[dict[str, Any]] = []
    print(f"\nCAT vs catsim: {n_examinees} examinees, 500-item bank, same answers for both")
    print(f"  {'bank':4s} {'stop':12s} {'method':28s} {'items':>6s} {'RMSE':>6s}", end="")
    print(f" {'bias':>7s} {'SE stop':>7s} {'ms/exam':>8s}")
    for model, guessing, k, se_target, max_items in scenarios:
        ours, theirs = compare_with_catsim(
            n_examinees,
            guessing=guessing,
            randomesque_k=k,
            se_target=se_target,
            max_items=max_items,
        )
        stop = f"SE<{se_target:g}|{max_items}" if se_target > 1e-3 else f"fixed {max_items}"
        for run in (ours, theirs):
            print(
                f"  {model:4s} {stop:12s} {run.method:28s} {run.mean_items:6.2f} {run.rmse:6.3f}"
                f" {run.bias:7.3f} {run.share_se_reached:7.0%} {run.ms_per_examinee:8.2f}"
            )
        comparisons.append(
            {
                "model": model,
                "randomesque_k": k,
                "se_target": se_target,
                "max_items": max_items,
                "ours": ours.to_dict(),
                "catsim": theirs.to_dict(),
            }
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "numpy": np.__version__,
        "speed_us": figures,
        "calibration": fits,
        "cat_vs_catsim": {"examinees": n_examinees, "scenarios": comparisons},
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
