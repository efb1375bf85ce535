"""False-positive rates of the fraud signals on real, mostly honest learning logs.

Run: ``.venv/bin/python -m bench.fraud_false_positives [--limit N]``. Prints, per
dataset and per signal, the share of attempts the signal fires on (weight > 0), the
share with any signal, and the share that would raise an alert (score at or above
``Settings.fraud_alert_threshold``); writes ``bench/results/fraud_false_positives.json``.

Each log is replayed in time order through the same code the processor runs:
:func:`scheduler.fraud_batch.individual_evidence` (rapid response against the rolling
item/skill histograms, person fit lz* with Rasch proxies since neither log comes
with calibrated items, velocity), and the processor's collusion rule re-stated over
in-memory windows (group = class; same item, same normalized wrong answer, within
the window, uncommon among the item's other wrong answers; both sides of a match are
re-scored, as the processor does). Figures are measured, never asserted.

The logs are assumed mostly honest, so every firing counts as a false positive here;
some are not (ASSISTments learners are known to game hints and guess rapidly), so
these rates are upper bounds on the false-positive rate.

* ``assistments2009_pybkt_as_2020/as.csv`` (10,791 answers): real response times
  (``ms_first_response``), answer text and classes; no timestamps, only ``order_id``.
  Event time is rebuilt as ``order_id / 2`` seconds (within-learner gaps between
  consecutive answers are ~2 order ids per second of response time, median measured
  on this file), pushed forward so that a learner's answer never comes sooner than
  its own response time after the previous one. Velocity and collusion windows rest
  on this reconstruction; rapid response and misfit do not.
* ``cognitive_tutor_algebra_pybkt_ct_2020/ct.csv`` (18,220 steps, 11 learners): real
  timestamps (1 s resolution); response time = first transaction - step start
  (0 s, i.e. under a second, reads as "not reported"); item = problem + step; skill =
  first KC. No answer text and no classes: collusion cannot be measured.

Shared device is measured on neither: no log records devices.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from learnstream.settings import get_settings
from processors.events import Attempt
from processors.fraud import ScoredAttempt
from scheduler.fraud import (
    DEFAULT_FRAUD_CONFIG,
    EMPTY_REFERENCE,
    FraudConfig,
    FraudEvidence,
    FraudSignalKind,
    ResponseReference,
    collusion,
    combine,
    is_uncommon,
    normalize_response,
    observe,
)
from scheduler.fraud_batch import LearnerHistory, individual_evidence

RESULTS = Path(__file__).resolve().parent / "results" / "fraud_false_positives.json"
AS_CSV = Path("assistments2009_pybkt_as_2020") / "as.csv"
CT_CSV = Path("cognitive_tutor_algebra_pybkt_ct_2020") / "ct.csv"
# order ids per second of a learner's own response time (median on as.csv, see above).
ORDER_IDS_PER_SECOND = 2.0
SIGNALS = (
    FraudSignalKind.RAPID_RESPONSE,
    FraudSignalKind.PERSON_MISFIT,
    FraudSignalKind.COLLUSION,
    FraudSignalKind.IMPOSSIBLE_VELOCITY,
)


@dataclass(frozen=True, slots=True)
class LogAttempt:
    """One answer of a log, as the replay needs it."""

    scored: ScoredAttempt
    group: str | None  # class, for collusion


def _attempt(
    n: int, user: str, item: str, skill: str, correct: bool, at: datetime, response: str, ms: int
) -> ScoredAttempt:
    return ScoredAttempt(
        attempt=Attempt(
            event_id=str(uuid.UUID(int=n)),
            tenant_id="bench",
            user_id=user,
            session_id="",
            skill_ids=(skill,),
            correct=correct,
            score=float(correct),
            occurred_at=at,
        ),
        item_id=item,
        response=normalize_response(response),
        response_time_ms=max(ms, 0),
    )


def read_assistments(path: Path, limit: int | None) -> list[LogAttempt]:
    """as.csv in rebuilt event-time order (see the module docstring)."""
    with path.open(encoding="latin-1", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first_order = min(int(r["order_id"]) for r in rows)
    start = datetime(2009, 9, 1, tzinfo=UTC)
    clock: dict[str, datetime] = {}
    timed: list[tuple[datetime, int, dict[str, str]]] = []
    for row in sorted(rows, key=lambda r: (r["user_id"], int(r["order_id"]))):
        ms = int(float(row["ms_first_response"] or 0))
        at = start + timedelta(seconds=(int(row["order_id"]) - first_order) / ORDER_IDS_PER_SECOND)
        previous = clock.get(row["user_id"])
        if previous is not None:
            at = max(at, previous + timedelta(milliseconds=max(ms, 0)))
        clock[row["user_id"]] = at
        timed.append((at, int(row["order_id"]), row))
    timed.sort(key=lambda entry: (entry[0], entry[1]))
    attempts = [
        LogAttempt(
            _attempt(
                n,
                row["user_id"],
                row["problem_id"],
                row["skill_name"],
                row["correct"] == "1",
                at,
                row["answer_text"],
                int(float(row["ms_first_response"] or 0)),
            ),
            f"class:{row['student_class_id']}",
        )
        for n, (at, _, row) in enumerate(timed, start=1)
    ]
    return attempts[:limit]


def _timestamp(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def read_cognitive_tutor(path: Path, limit: int | None) -> list[LogAttempt]:
    """ct.csv steps in first-transaction order (see the module docstring)."""
    with path.open(encoding="latin-1", newline="") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["First Transaction Time"]]
    timed = []
    for row in rows:
        first = _timestamp(row["First Transaction Time"])
        started = _timestamp(row["Step Start Time"]) if row["Step Start Time"] else None
        ms = int((first - started).total_seconds() * 1000) if started is not None else 0
        skill = (row["KC(Default)"] or "unknown").split("~~")[0]
        item = f"{row['Problem Name']}/{row['Step Name']}"
        timed.append((first, int(row["Row"]), row["Anon Student Id"], item, skill, row, ms))
    timed.sort(key=lambda entry: (entry[0], entry[1]))
    attempts = [
        LogAttempt(
            _attempt(n, user, item, skill, row["Correct First Attempt"] == "1", at, "", ms), None
        )
        for n, (at, _, user, item, skill, row, ms) in enumerate(timed, start=1)
    ]
    return attempts[:limit]


@dataclass
class Replay:
    """In-memory state of one replay: what the processor keeps in PostgreSQL."""

    config: FraudConfig
    references: dict[tuple[str, str], ResponseReference]
    histories: dict[str, LearnerHistory]
    wrong_counts: dict[tuple[str, str], int]
    group_answers: dict[tuple[str, str, str], list[tuple[datetime, str, str]]]
    partners: dict[str, set[str]]
    weights: dict[str, dict[FraudSignalKind, float]]

    @classmethod
    def empty(cls, config: FraudConfig) -> Replay:
        return cls(config, {}, {}, {}, defaultdict(list), defaultdict(set), {})

    def run(self, attempts: list[LogAttempt]) -> None:
        for entry in attempts:
            self.step(entry)

    def step(self, entry: LogAttempt) -> None:
        scored, attempt = entry.scored, entry.scored.attempt
        item_key, skill_key = ("item", scored.item_id), ("skill", attempt.skill_ids[0])
        item = self.references.get(item_key, EMPTY_REFERENCE)
        evidence, history = individual_evidence(
            scored,
            history=self.histories.get(attempt.user_id, LearnerHistory()),
            item=item,
            skill=self.references.get(skill_key, EMPTY_REFERENCE),
            calibrated=None,
            config=self.config,
        )
        self.histories[attempt.user_id] = history
        self.weights[attempt.event_id] = {e.signal: e.weight for e in evidence if e is not None}
        if not attempt.correct and scored.response is not None:
            self._collusion(entry, item)
            answer = (scored.item_id, scored.response)
            self.wrong_counts[answer] = self.wrong_counts.get(answer, 0) + 1
        for key in (item_key, skill_key):
            self.references[key] = observe(
                self.references.get(key, EMPTY_REFERENCE),
                response_time_ms=scored.response_time_ms,
                correct=attempt.correct,
                config=self.config,
            )

    def _collusion(self, entry: LogAttempt, item: ResponseReference) -> None:
        scored, attempt = entry.scored, entry.scored.attempt
        if entry.group is None or scored.response is None:
            return
        window = timedelta(seconds=self.config.collusion_window_s)
        answers = self.group_answers[(entry.group, scored.item_id, scored.response)]
        matches = [
            (user, event)
            for at, user, event in answers
            if user != attempt.user_id and abs(at - attempt.occurred_at) <= window
        ]
        answers.append((attempt.occurred_at, attempt.user_id, attempt.event_id))
        if not matches:
            return
        count = self.wrong_counts.get((scored.item_id, scored.response), 0)
        if not is_uncommon(count, item.answers - item.correct, len(matches), self.config):
            return
        for user, event in matches:
            self.partners[attempt.event_id].add(user)
            self.partners[event].add(attempt.user_id)
        for event in (attempt.event_id, *(event for _, event in matches)):
            found = collusion(len(self.partners[event]), scored.response, self.config)
            if found is not None:
                self.weights[event][FraudSignalKind.COLLUSION] = found.weight

    def rates(self, alert_threshold: float) -> dict[str, Any]:
        """Share of attempts each signal fired on, any signal, and an alert, in [0, 1]."""
        total = len(self.weights)
        fired = {s: sum(1 for w in self.weights.values() if w.get(s, 0) > 0) for s in SIGNALS}
        scores = [
            combine([FraudEvidence(s, w, "") for s, w in weights.items()])
            for weights in self.weights.values()
        ]
        return {
            "attempts": total,
            "learners": len(self.histories),
            "per_signal": {s.value: fired[s] / total for s in SIGNALS},
            "any_signal": sum(1 for x in scores if x > 0) / total,
            "alert": sum(1 for x in scores if x >= alert_threshold) / total,
        }


def measure(name: str, attempts: list[LogAttempt], alert_threshold: float) -> dict[str, Any]:
    started = time.perf_counter()
    replay = Replay.empty(DEFAULT_FRAUD_CONFIG)
    replay.run(attempts)
    figures = replay.rates(alert_threshold)
    figures["seconds"] = time.perf_counter() - started
    figures["dataset"] = name
    return figures


def _table(rows: list[dict[str, Any]], measurable: dict[str, set[str]]) -> Iterator[str]:
    names = [s.value for s in SIGNALS]
    header = ["dataset".ljust(38), "attempts".rjust(8), *(n.rjust(20) for n in names)]
    yield " ".join([*header, "any signal".rjust(10), "alert".rjust(7)])
    for row in rows:
        cells = [
            (f"{row['per_signal'][n]:.2%}" if n in measurable[row["dataset"]] else "n/a").rjust(20)
            for n in names
        ]
        line = [row["dataset"].ljust(38), str(row["attempts"]).rjust(8), *cells]
        yield " ".join(
            [*line, f"{row['any_signal']:.2%}".rjust(10), f"{row['alert']:.2%}".rjust(7)]
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="answers per dataset (all)")
    args = parser.parse_args(argv)
    settings = get_settings()
    data = settings.dataset_dir
    threshold = settings.fraud_alert_threshold
    every = {s.value for s in SIGNALS}
    datasets = {
        "assistments2009_pybkt_as_2020": (read_assistments(data / AS_CSV, args.limit), every),
        "cognitive_tutor_algebra_pybkt_ct_2020": (
            read_cognitive_tutor(data / CT_CSV, args.limit),
            every - {FraudSignalKind.COLLUSION.value},
        ),
    }
    rows = [measure(name, attempts, threshold) for name, (attempts, _) in datasets.items()]
    measurable = {name: signals for name, (_, signals) in datasets.items()}
    print(f"Fraud signals on honest logs: share of attempts flagged (alert at {threshold})")
    for line in _table(rows, measurable):
        print(line)
    print("shared_device: n/a on both (no device ids in either log)")
    for row in rows:
        row["not_measurable"] = [*sorted(every - measurable[row["dataset"]]), "shared_device"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "alert_threshold": threshold,
                "config": repr(DEFAULT_FRAUD_CONFIG),
                "python": platform.python_version(),
                "datasets": rows,
            },
            indent=2,
        )
    )
    print(f"written {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
