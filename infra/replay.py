"""Turn real learning logs (or a simulator) into the events a client app would post.

Used by ``make demo``, the end-to-end tests and the benchmarks, so all three replay
the same events. Event ids are deterministic (uuid5 of dataset and row), so replaying
a dataset twice reports the second run as duplicates instead of counting it twice.

Sources:
* ``assistments2009_pybkt_as_2020`` (pyBKT's ``as.csv``): real user, problem, skill,
  correctness, hint counts and first-response times, ordered by ``order_id``. The
  file has no timestamps; ``occurred_at`` is synthesised one minute apart in
  ``order_id`` order, starting 2009-09-01 (the school year the log comes from).
* ``assistments2009_dkvmn`` (3-line format: count / skill ids / 0-1 flags per learner):
  skills and correctness only; timestamps synthesised the same way per learner.
* ``assistments2009_akt_pid`` (AKT's 4-line files: user / problem ids / skill ids /
  0-1): real learners, problems and skill names (110 skills), parsed by
  :func:`scheduler.datasets.parse_four_line` (the one 4-line parser); the k rows of a
  question tagged with k skills become one attempt carrying the k skills, as a client
  app would post it.
* :func:`rebase_to_recent`: none of the logs has usable dates for today's dashboards
  (they are from 2009), so the demo moves every learner's answers into sessions of
  the last weeks, each learner's order kept, the newest answer a few minutes old.
* :func:`simulated_attempts`: BKT-generated learners for a clone without the datasets.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from learnstream.events.v1 import attempt_pb2, ingest_pb2
from ml.datasets import repeat_copy_mask
from scheduler.bkt import BKTParams, predict_correct, update
from scheduler.datasets import parse_four_line, parse_three_line

EVENT_ID_NAMESPACE = uuid.UUID("6f1d2c9e-5b7a-4e0f-9a51-2b3c4d5e6f70")
SYNTHETIC_START = datetime(2009, 9, 1, tzinfo=UTC)
SOURCE_APP = "learnstream-replay"
# The AKT split file the demo replays: fold 1's held-out learners (830 learners).
AKT_PID_FILE = "assist2009_pid_test1.csv"
# Fold 1's three files hold every learner of the log once (4,151 learners).
AKT_PID_ALL_FILES = ("assist2009_pid_train1.csv", "assist2009_pid_valid1.csv", AKT_PID_FILE)
# rebase_to_recent: answers per session, seconds between answers, days the history spans.
SESSION_ANSWERS = 12
ANSWER_GAP_S = 45
HISTORY_DAYS = 21


@dataclass(frozen=True, slots=True)
class ReplayAttempt:
    """One answer from a log, before it becomes an event."""

    row: int  # position in the source, for the deterministic event id
    user_id: str
    item_id: str
    skill_ids: tuple[str, ...]
    correct: bool
    occurred_at: datetime
    response_time_ms: int = 0
    hint_count: int = 0
    attempt_number: int = 1


def attempt_event(
    attempt: ReplayAttempt, *, dataset: str, tenant_id: str
) -> ingest_pb2.LearningEvent:
    """The LearningEvent a client would post for ``attempt``."""
    event = ingest_pb2.LearningEvent()
    message = event.attempt
    envelope = message.envelope
    envelope.event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{dataset}:{attempt.row}"))
    envelope.tenant_id = tenant_id
    envelope.user_id = attempt.user_id
    envelope.occurred_at.FromDatetime(attempt.occurred_at)
    envelope.source.app = SOURCE_APP
    envelope.source.platform = "replay"
    envelope.source.version = dataset
    message.item_id = attempt.item_id
    message.item_version = 1
    message.skill_ids.extend(attempt.skill_ids)
    message.correct = attempt.correct
    message.response_time_ms = attempt.response_time_ms
    message.hint_count = attempt.hint_count
    message.attempt_number = attempt.attempt_number
    message.context = attempt_pb2.ATTEMPT_CONTEXT_PRACTICE
    return event


def assistments_as_csv(path: Path) -> list[ReplayAttempt]:
    """pyBKT's ``as.csv``, in ``order_id`` order (the order the answers were given).

    Negative ``ms_first_response`` values (a known quirk of the ASSISTments export)
    become 0: the time is unknown, the answer itself is real.
    """
    with path.open(encoding="latin-1", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.sort(key=lambda r: int(r["order_id"]))
    attempts: list[ReplayAttempt] = []
    for index, row in enumerate(rows):
        attempts.append(
            ReplayAttempt(
                row=int(row["order_id"]),
                user_id=row["user_id"],
                item_id=row["problem_id"],
                skill_ids=(row["skill_name"],),
                correct=row["correct"] == "1",
                occurred_at=SYNTHETIC_START + timedelta(minutes=index),
                response_time_ms=max(0, int(row["ms_first_response"] or 0)),
                hint_count=max(0, int(row["hint_count"] or 0)),
                attempt_number=max(1, int(row["attempt_count"] or 1)),
            )
        )
    return attempts


def three_line_file(path: Path, *, max_learners: int | None = None) -> list[ReplayAttempt]:
    """A 3-line KT file (count / skill ids / 0-1 flags per learner), learner by learner.

    Parsed by :func:`scheduler.datasets.parse_three_line`, so learners are named as
    ``ml`` names them (``<file stem>:<n>``, n = position in the file); each learner's
    answers are one minute apart.
    """
    learners = parse_three_line(path.read_text(encoding="utf-8"), path.stem)
    attempts: list[ReplayAttempt] = []
    for sequence in learners[:max_learners]:
        for step, (skill, flag) in enumerate(
            zip(sequence.skill_ids, sequence.correct, strict=True)
        ):
            attempts.append(
                ReplayAttempt(
                    row=len(attempts),
                    user_id=sequence.learner_id,
                    item_id=f"skill-{skill}",
                    skill_ids=(f"skill-{skill}",),
                    correct=flag == 1,
                    occurred_at=SYNTHETIC_START + timedelta(minutes=step),
                )
            )
    return attempts


def akt_pid_attempts(
    folder: Path, *, max_learners: int | None = None, files: tuple[str, ...] = (AKT_PID_FILE,)
) -> list[ReplayAttempt]:
    """ASSISTments 2009 with problem ids (AKT's 4-line ``assist2009_pid`` files).

    Learners keep their original ASSISTments user ids, items their original problem ids
    (``problems.json``), skills their names (``skill.json``). The consecutive rows of one
    question tagged with k skills (same problem, same answer) become one attempt with
    the k skills: :func:`ml.datasets.repeat_copy_mask` is the one rule for what counts
    as such a copy. ``row`` is the file row of the question's first copy, so event ids
    stay stable. Timestamps are placeholders one minute apart; see :func:`rebase_to_recent`.
    ``files`` are read in order (:data:`AKT_PID_ALL_FILES`: every learner of the log).
    """
    skill_names = {str(index): name for name, index in _json_map(folder / "skill.json").items()}
    problem_ids = {str(index): pid for pid, index in _json_map(folder / "problems.json").items()}
    attempts: list[ReplayAttempt] = []
    row = 0
    sequences = [
        seq
        for name in files
        for seq in parse_four_line((folder / name).read_text(encoding="utf-8"), Path(name).stem)
    ]
    for learner, sequence in enumerate(sequences):
        if max_learners is not None and learner >= max_learners:
            break
        item_ids = sequence.item_ids or ()
        first_copy = repeat_copy_mask(item_ids)  # False for copies 2..k
        for position, (item, skill, flag) in enumerate(
            zip(item_ids, sequence.skill_ids, sequence.correct, strict=True)
        ):
            skill_name = skill_names.get(skill, f"skill-{skill}")
            if (
                not first_copy[position]
                and attempts
                and attempts[-1].user_id == sequence.learner_id
            ):
                previous = attempts[-1]
                if skill_name not in previous.skill_ids:
                    attempts[-1] = replace(previous, skill_ids=(*previous.skill_ids, skill_name))
            else:
                attempts.append(
                    ReplayAttempt(
                        row=row,
                        user_id=sequence.learner_id,
                        item_id=problem_ids.get(item, f"problem-{item}"),
                        skill_ids=(skill_name,),
                        correct=flag == 1,
                        occurred_at=SYNTHETIC_START + timedelta(minutes=position),
                    )
                )
            row += 1
    return attempts


def _json_map(path: Path) -> dict[str, int]:
    mapping: dict[str, int] = json.loads(path.read_text())
    return mapping


def rebase_to_recent(attempts: list[ReplayAttempt], *, end_at: datetime) -> list[ReplayAttempt]:
    """The same answers, re-dated into recent study sessions ending at or before ``end_at``.

    Each learner's answers keep their order and are cut into sessions of
    ``SESSION_ANSWERS`` answers ``ANSWER_GAP_S`` seconds apart (or the answer's own
    response time plus 20 s, when the log has it). Sessions are spread evenly over at
    most ``HISTORY_DAYS`` days; a learner's last session ends 0 to 7 days before
    ``end_at`` (a stable function of the user id), so the dashboards show active and
    lapsing learners. ``end_at`` is timezone-aware UTC; the result is in input order.
    """
    by_learner: dict[str, list[int]] = {}
    for index, attempt in enumerate(attempts):
        by_learner.setdefault(attempt.user_id, []).append(index)
    rebased: list[ReplayAttempt | None] = [None] * len(attempts)
    for user_id, indices in by_learner.items():
        digest = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big")
        idle = timedelta(days=digest % 8, minutes=2 + digest % 600)
        sessions = [
            indices[i : i + SESSION_ANSWERS] for i in range(0, len(indices), SESSION_ANSWERS)
        ]
        spacing = timedelta(days=min(2.0, HISTORY_DAYS / max(len(sessions), 1)))
        for back, session in enumerate(reversed(sessions)):
            ends_at = end_at - idle - spacing * back
            gaps = [
                timedelta(seconds=attempts[i].response_time_ms / 1000 + 20)
                if attempts[i].response_time_ms
                else timedelta(seconds=ANSWER_GAP_S)
                for i in session
            ]
            moment = ends_at - sum(gaps[1:], timedelta())
            for position, index in enumerate(session):
                if position:
                    moment += gaps[position]
                rebased[index] = replace(attempts[index], occurred_at=moment)
    return [attempt for attempt in rebased if attempt is not None]


def item_calibration_corpus(
    dataset_dir: Path, dataset: str, item_ids: set[str]
) -> list[ReplayAttempt]:
    """Every learner's answers to ``item_ids`` in the whole log, for calibrating items.

    Only for the AKT files: a replay of a few hundred learners answers most of its
    thousands of problems once or twice, under the 20 answers an item needs to be
    calibrated; the log's 4,151 learners are the school's earlier years. Empty for other
    datasets (their replay is the whole log, or their items are skills).
    """
    folder = dataset_dir / dataset
    if not (folder / AKT_PID_FILE).exists():
        return []
    everyone = akt_pid_attempts(folder, files=AKT_PID_ALL_FILES)
    return [attempt for attempt in everyone if attempt.item_id in item_ids]


def simulated_attempts(
    rng: np.random.Generator, *, learners: int = 200, skills: int = 8, answers_per_skill: int = 12
) -> list[ReplayAttempt]:
    """Learners who follow BKT with default-ish parameters (for clones without datasets)."""
    params = BKTParams(prior=0.15, learn=0.2, guess=0.2, slip=0.1)
    attempts: list[ReplayAttempt] = []
    for learner in range(learners):
        minute = 0
        for skill in range(skills):
            p_mastery = params.prior
            for _ in range(answers_per_skill):
                correct = bool(rng.random() < predict_correct(p_mastery, params))
                attempts.append(
                    ReplayAttempt(
                        row=len(attempts),
                        user_id=f"sim-{learner}",
                        item_id=f"sim-item-{skill}-{rng.integers(20)}",
                        skill_ids=(f"sim-skill-{skill}",),
                        correct=correct,
                        occurred_at=SYNTHETIC_START + timedelta(minutes=minute),
                        response_time_ms=int(rng.gamma(2.0, 8000.0)),
                    )
                )
                p_mastery = update(p_mastery, 1.0 if correct else 0.0, params)
                minute += 1
    return attempts


def load_replay(
    dataset_dir: Path, dataset: str, *, seed: int = 7, max_learners: int | None = None
) -> tuple[str, list[ReplayAttempt]]:
    """The attempts of ``dataset`` under ``dataset_dir``, or simulated ones if it is absent.

    Returns the name of what was loaded (``"simulated"`` for the fallback) and the
    attempts; ``max_learners`` keeps the first learners of the AKT and 3-line files.
    """
    folder = dataset_dir / dataset
    if (folder / "as.csv").exists():
        return dataset, assistments_as_csv(folder / "as.csv")
    if (folder / AKT_PID_FILE).exists():
        return dataset, akt_pid_attempts(folder, max_learners=max_learners)
    three_line = sorted(folder.glob("*_train.csv")) if folder.exists() else []
    if three_line:
        return dataset, three_line_file(three_line[0], max_learners=max_learners)
    return "simulated", simulated_attempts(np.random.default_rng(seed))


def shard_by_learner(
    events: list[ingest_pb2.LearningEvent], shards: int, batch_size: int
) -> list[list[ingest_pb2.IngestRequest]]:
    """Split events into ``shards`` independent streams of requests, one learner per shard.

    Concurrent senders may then post in parallel without reordering any learner's
    events: each learner's events stay in one shard, in their original order.
    """
    streams: list[list[ingest_pb2.LearningEvent]] = [[] for _ in range(shards)]
    for event in events:
        user = event.attempt.envelope.user_id
        streams[uuid.uuid5(EVENT_ID_NAMESPACE, user).int % shards].append(event)
    requests: list[list[ingest_pb2.IngestRequest]] = []
    for stream in streams:
        requests.append(
            [
                ingest_pb2.IngestRequest(events=stream[i : i + batch_size])
                for i in range(0, len(stream), batch_size)
            ]
        )
    return requests


def iter_learners(attempts: list[ReplayAttempt]) -> Iterator[str]:
    """Distinct learner ids in first-seen order."""
    seen: set[str] = set()
    for attempt in attempts:
        if attempt.user_id not in seen:
            seen.add(attempt.user_id)
            yield attempt.user_id
