"""BKT: per-event update speed, and our EM fit against pyBKT 1.4.3 (compiled) on real data.

``python -m bench.scheduler_bkt`` prints two tables and writes
``bench/results/scheduler_bkt.json``:

1. microseconds per BKT update: scalar :func:`scheduler.bkt.update` and
   :func:`scheduler.bkt.update_many` over batches of learners;
2. for ASSISTments 2009 (DKT/Piech file in pyBKT format, and the DKVMN split),
   BKT and BKT+forgets, fitted on train and scored on test: test AUC, fit
   seconds, train log-likelihood, and how far our parameters are from pyBKT's.

"ours" uses the default bounds (guess, slip < 0.5: no degenerate fits); "ours
loose" uses pyBKT-like bounds, to check the EM itself against pyBKT. Both sides
get the same answers grouped the same way (pyBKT groups a skill's answers by
``user_id`` in file order; so does :func:`scheduler.bkt.build_sequences`), 5
random restarts each, tolerance 0.005 nats, at most 100 iterations. Test
answers on skills absent from train are dropped for both. Options:
``--skills N`` keeps the N most answered skills (quick runs), ``--no-forgets``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import timeit
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from scheduler import bkt
from scheduler.datasets import Responses, parse_csv, parse_three_line, to_responses

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "scheduler_bkt.json"
RESTARTS = 5
SEED = 20240601


@dataclass(frozen=True)
class Split:
    """One dataset's train and test answers, restricted to skills seen in train."""

    name: str
    train: Responses
    test: Responses
    dropped_test_answers: int


def _subset(responses: Responses, keep: np.ndarray) -> Responses:
    return Responses(
        learner=responses.learner[keep],
        skill=responses.skill[keep],
        correct=responses.correct[keep],
        skill_names=responses.skill_names,
    )


def make_split(name: str, train: Responses, test: Responses, ranks: range | None) -> Split:
    """Keep the train skills whose rank by answer count (0 = most answered) is in ``ranks``
    (all skills when None), in both halves."""
    counts = np.bincount(train.skill)
    skills = np.nonzero(counts)[0]
    if ranks is not None:
        skills = np.argsort(-counts, kind="stable")[ranks.start : ranks.stop : ranks.step]
    in_test = np.isin(test.skill, skills)
    return Split(
        name,
        _subset(train, np.isin(train.skill, skills)),
        _subset(test, in_test),
        int((~in_test).sum()),
    )


def _read_csv(path: Path) -> Responses:
    # scheduler/ parses; the file is read here (scheduler/ does no I/O).
    return to_responses(parse_csv(path.read_text(encoding="utf-8"), path.stem))


def _read_three_line(path: Path) -> Responses:
    return to_responses(parse_three_line(path.read_text(encoding="utf-8"), path.stem))


def load_piech(ranks: range | None = None, root: Path = SHARED_DATA) -> Split:
    """ASSISTments 2009, DKT/Piech file, in pyBKT's csv format (the user_id quirk kept)."""
    folder = root / "assistments2009_dkt_piech" / "pybkt_format"
    return make_split(
        "assist2009_piech_pybkt",
        _read_csv(folder / "builder_train_preprocessed.csv"),
        _read_csv(folder / "builder_test_preprocessed.csv"),
        ranks,
    )


def load_dkvmn(ranks: range | None = None, root: Path = SHARED_DATA) -> Split:
    """ASSISTments 2009 'updated', DKVMN train/test split (3-line format)."""
    folder = root / "assistments2009_dkvmn"
    return make_split(
        "assist2009_dkvmn",
        _read_three_line(folder / "assist2009_updated_train.csv"),
        _read_three_line(folder / "assist2009_updated_test.csv"),
        ranks,
    )


def n_skills(split: Split) -> int:
    return max(len(split.train.skill_names), len(split.test.skill_names))


def pybkt_frame(responses: Responses) -> pd.DataFrame:
    """The answers as pyBKT expects them (one row per answer, learner order kept)."""
    return pd.DataFrame(
        {
            "user_id": responses.learner,
            "skill_name": responses.skill,
            "correct": responses.correct.astype(np.int64),
        }
    )


@dataclass(frozen=True)
class PyBKTResult:
    params: bkt.BKTParamArrays
    p_correct: np.ndarray  # test answers, in test order
    fit_seconds: float


def run_pybkt(split: Split, forgets: bool, seed: int = SEED) -> PyBKTResult:
    """Fit pyBKT on train, predict test; parameters mapped onto skill ids."""
    from pyBKT.models import Model  # reference only; heavy import

    with warnings.catch_warnings():
        # pyBKT 1.4.3 sets a pandas option deprecated in pandas 3.
        warnings.simplefilter("ignore")
        model = Model(seed=seed, num_fits=RESTARTS)
        started = time.perf_counter()
        model.fit(data=pybkt_frame(split.train), forgets=forgets)
        seconds = time.perf_counter() - started
        # pyBKT sorts the frame it is given; its index keeps the original row order.
        predicted = model.predict(data=pybkt_frame(split.test)).sort_index()
    fitted = [bkt.DEFAULT_PARAMS] * n_skills(split)
    for skill, values in model.fit_model.items():
        fitted[int(skill)] = bkt.BKTParams(
            prior=float(values["prior"]),
            learn=float(values["learns"][0]),
            guess=float(values["guesses"][0]),
            slip=float(values["slips"][0]),
            forget=float(values["forgets"][0]),
        )
    return PyBKTResult(
        bkt.BKTParamArrays.from_params(fitted),
        predicted["correct_predictions"].to_numpy(dtype=np.float64),
        seconds,
    )


@dataclass(frozen=True)
class OursResult:
    fit: bkt.BKTFit
    p_correct: np.ndarray
    fit_seconds: float


def run_ours(
    split: Split, forgets: bool, bounds: bkt.BKTBounds = bkt.DEFAULT_BOUNDS, seed: int = SEED
) -> OursResult:
    """Fit our EM on train (answers grouped like pyBKT), predict test."""
    skills = n_skills(split)
    started = time.perf_counter()
    train = bkt.build_sequences(split.train.skill, split.train.learner, split.train.correct, skills)
    fit = bkt.fit_em(
        train, np.random.default_rng(seed), restarts=RESTARTS, forgets=forgets, bounds=bounds
    )
    seconds = time.perf_counter() - started
    test = bkt.build_sequences(split.test.skill, split.test.learner, split.test.correct, skills)
    return OursResult(fit, bkt.predict_sequences(fit.param_arrays(), test), seconds)


def param_gaps(
    ours: bkt.BKTParamArrays, reference: bkt.BKTParamArrays, skills: np.ndarray
) -> dict[str, dict[str, float]]:
    """Median and max absolute difference per parameter over ``skills``."""
    gaps = {}
    for name in bkt.PARAM_NAMES:
        diff = np.abs(getattr(ours, name)[skills] - getattr(reference, name)[skills])
        gaps[name] = {"median": float(np.median(diff)), "max": float(np.max(diff))}
    return gaps


@dataclass(frozen=True)
class ModelFigures:
    """One model's figures on one split."""

    test_auc: float
    fit_seconds: float
    train_log_likelihood: float  # nats, under our likelihood, on the train answers
    # median and max |ours - pyBKT| per parameter; None for pyBKT itself
    param_gap_all_skills: dict[str, dict[str, float]] | None = None
    param_gap_nondegenerate_skills: dict[str, dict[str, float]] | None = None
    # skills where pyBKT's fit is not degenerate and every |ours - pyBKT| <= 0.05
    skills_params_within_005: int | None = None
    # skills where our fit's train log-likelihood is below pyBKT's by more than 0.5 nats
    skills_below_pybkt_likelihood: int | None = None


@dataclass(frozen=True)
class ComparisonRow:
    """pyBKT against ours on one split and variant."""

    dataset: str
    forgets: bool
    train_answers: int
    test_answers: int
    test_answers_dropped_unseen_skill: int
    skills: int
    pybkt_degenerate_skills: int  # pyBKT fits with guess or slip >= 0.5
    # our forward filter run on pyBKT's fitted parameters, against pyBKT's own predictions
    replay_max_abs_diff: float
    models: dict[str, ModelFigures]


def compare(split: Split, forgets: bool) -> ComparisonRow:
    """pyBKT, ours and ours-loose on one split."""
    reference = run_pybkt(split, forgets)
    ours = run_ours(split, forgets)
    loose = run_ours(split, forgets, bkt.BKTBounds.loose())
    skills = n_skills(split)
    train = bkt.build_sequences(split.train.skill, split.train.learner, split.train.correct, skills)
    test = bkt.build_sequences(split.test.skill, split.test.learner, split.test.correct, skills)
    fitted_skills = np.nonzero(np.bincount(split.train.skill, minlength=skills))[0]
    degenerate = {
        int(s) for s in fitted_skills if bkt.is_degenerate(reference.params.params(int(s)))
    }
    sane = np.array([s for s in fitted_skills if int(s) not in degenerate], dtype=np.int64)
    replayed = bkt.predict_sequences(reference.params, test)
    reference_ll = bkt.log_likelihood(reference.params, train)
    y = split.test.correct
    models = {
        "pybkt": ModelFigures(
            float(roc_auc_score(y, reference.p_correct)),
            reference.fit_seconds,
            float(reference_ll.sum()),
        )
    }
    for label, result in (("ours", ours), ("ours_loose", loose)):
        params = result.fit.param_arrays()
        worst_gap = np.max(
            [np.abs(getattr(params, n) - getattr(reference.params, n)) for n in bkt.PARAM_NAMES],
            axis=0,
        )
        skill_ll = np.array([s.log_likelihood for s in result.fit.skills])
        models[label] = ModelFigures(
            float(roc_auc_score(y, result.p_correct)),
            result.fit_seconds,
            result.fit.log_likelihood,
            param_gaps(params, reference.params, fitted_skills),
            param_gaps(params, reference.params, sane) if len(sane) else None,
            int((worst_gap[sane] <= 0.05).sum()),
            int((skill_ll[fitted_skills] < reference_ll[fitted_skills] - 0.5).sum()),
        )
    return ComparisonRow(
        dataset=split.name,
        forgets=forgets,
        train_answers=split.train.n_answers,
        test_answers=split.test.n_answers,
        test_answers_dropped_unseen_skill=split.dropped_test_answers,
        skills=len(fitted_skills),
        pybkt_degenerate_skills=len(degenerate),
        replay_max_abs_diff=float(np.max(np.abs(replayed - reference.p_correct))),
        models=models,
    )


def time_updates() -> dict[str, float]:
    """Microseconds per update: scalar, and vectorised over batches of learners."""
    params = bkt.BKTParams(prior=0.3, learn=0.1, guess=0.2, slip=0.1, forget=0.01)
    figures = {}
    calls = 200_000
    seconds = min(timeit.repeat(lambda: bkt.update(0.42, 1.0, params), number=calls, repeat=5))
    figures["scalar_update_us"] = seconds / calls * 1e6
    seconds = min(timeit.repeat(lambda: bkt.predict_correct(0.42, params), number=calls, repeat=5))
    figures["scalar_predict_us"] = seconds / calls * 1e6
    rng = np.random.default_rng(SEED)
    arrays = bkt.BKTParamArrays.from_params([params] * 100)
    for batch in (1, 100, 10_000, 1_000_000):
        p_mastery = rng.random(batch)
        score = (rng.random(batch) < 0.6).astype(np.float64)
        skill = rng.integers(0, 100, batch)
        number = max(1, 200_000 // batch)
        seconds = min(
            timeit.repeat(
                partial(bkt.update_many, p_mastery, score, skill, arrays), number=number, repeat=5
            )
        )
        figures[f"vector_update_batch{batch}_us_per_call"] = seconds / number * 1e6
        figures[f"vector_update_batch{batch}_us_per_update"] = seconds / number / batch * 1e6
    return figures


def print_updates(figures: dict[str, float]) -> None:
    print("\nBKT per-event update (this machine, one core)")
    print(f"  scalar update           {figures['scalar_update_us']:8.3f} µs")
    print(f"  scalar predict_correct  {figures['scalar_predict_us']:8.3f} µs")
    for key, value in figures.items():
        if key.startswith("vector_update") and key.endswith("per_update"):
            batch = key.removeprefix("vector_update_batch").removesuffix("_us_per_update")
            per_call = figures[f"vector_update_batch{batch}_us_per_call"]
            print(
                f"  update_many batch {batch:>9}  {per_call:12.1f} µs/call  {value:8.4f} µs/update"
            )


def print_comparison(rows: list[ComparisonRow]) -> None:
    print(
        "\nBKT fit on train, AUC on test (5 restarts each; ours = bounded guess/slip < 0.5,"
        " ours_loose = pyBKT-like bounds)"
    )
    names = ("prior", "learn", "guess", "slip", "forget")
    header = (
        f"{'dataset':23} {'forgets':7} {'model':10} {'AUC':>7} {'ΔAUC':>7} {'fit s':>7}"
        f" {'train LL':>11} " + " ".join(f"{'|Δ' + n + '|':>9}" for n in names)
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        base = row.models["pybkt"].test_auc
        for label, figures in row.models.items():
            gaps = figures.param_gap_all_skills
            gap_text = " ".join(f"{gaps[n]['median']:9.4f}" for n in names) if gaps else ""
            print(
                f"{row.dataset:23} {row.forgets!s:7} {label:10} {figures.test_auc:7.4f}"
                f" {figures.test_auc - base:+7.4f} {figures.fit_seconds:7.1f}"
                f" {figures.train_log_likelihood:11.1f} {gap_text}"
            )
        print(
            f"    {row.skills} skills, {row.pybkt_degenerate_skills} pyBKT fits degenerate"
            f" (guess or slip >= 0.5); our filter on pyBKT's params reproduces its predictions"
            f" to {row.replay_max_abs_diff:.1e}; test answers {row.test_answers}"
            f" ({row.test_answers_dropped_unseen_skill} outside the fitted skills dropped)"
        )
        sane = row.skills - row.pybkt_degenerate_skills
        for label in ("ours", "ours_loose"):
            figures = row.models[label]
            print(
                f"    {label}: all params within 0.05 of pyBKT on"
                f" {figures.skills_params_within_005} of {sane} non-degenerate skills;"
                f" train LL below pyBKT's by > 0.5 nats on"
                f" {figures.skills_below_pybkt_likelihood} of {row.skills} skills"
            )
    print("|Δparam| = median over skills of |model - pyBKT|; train LL in nats.")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skills", type=int, default=None, help="keep the N most answered skills")
    parser.add_argument("--no-forgets", action="store_true", help="skip the BKT+forgets runs")
    args = parser.parse_args(argv)

    updates = time_updates()
    print_updates(updates)
    rows: list[ComparisonRow] = []
    if not SHARED_DATA.exists():
        print(f"\nno datasets at {SHARED_DATA}; pyBKT comparison skipped")
    else:
        for loader in (load_piech, load_dkvmn):
            split = loader(None if args.skills is None else range(args.skills))
            for forgets in (False,) if args.no_forgets else (False, True):
                print(f"... {split.name} forgets={forgets}", flush=True)
                rows.append(compare(split, forgets))
        print_comparison(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "processor": platform.processor()},
                "restarts": RESTARTS,
                "seed": SEED,
                "skills_option": args.skills,
                "updates": updates,
                "comparison": [asdict(row) for row in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
