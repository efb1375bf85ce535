"""Replay conversion: real rows become valid, deterministic, per-learner-ordered events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from infra import replay
from ml.sources import read_kt_file


def test_as_csv_rows_become_ordered_attempts(shared_data: Path) -> None:
    attempts = replay.assistments_as_csv(shared_data / "assistments2009_pybkt_as_2020" / "as.csv")
    assert len(attempts) == 10_791  # PROVENANCE.md counts
    assert len({a.user_id for a in attempts}) == 902
    assert {s for a in attempts for s in a.skill_ids} == {"Table", "Box and Whisker"}
    times = [a.occurred_at for a in attempts]
    assert times == sorted(times)
    assert sum(a.correct for a in attempts) == 8_029
    assert min(a.response_time_ms for a in attempts) >= 0


def test_three_line_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny_train.csv"
    path.write_text("3\n1,2,1\n1,0,1\n2\n5,5\n0,1\n")
    attempts = replay.three_line_file(path)
    assert [(a.user_id, a.skill_ids[0], a.correct) for a in attempts] == [
        ("tiny_train:0", "skill-1", True),
        ("tiny_train:0", "skill-2", False),
        ("tiny_train:0", "skill-1", True),
        ("tiny_train:1", "skill-5", False),
        ("tiny_train:1", "skill-5", True),
    ]


def test_event_ids_are_deterministic_and_distinct() -> None:
    attempts = replay.simulated_attempts(np.random.default_rng(1), learners=3, skills=2)
    first = [replay.attempt_event(a, dataset="sim", tenant_id="t") for a in attempts]
    second = [replay.attempt_event(a, dataset="sim", tenant_id="t") for a in attempts]
    ids = [e.attempt.envelope.event_id for e in first]
    assert ids == [e.attempt.envelope.event_id for e in second]
    assert len(set(ids)) == len(ids)


def test_sharding_keeps_each_learner_in_one_shard_in_order() -> None:
    attempts = replay.simulated_attempts(np.random.default_rng(2), learners=20, skills=2)
    events = [replay.attempt_event(a, dataset="sim", tenant_id="t") for a in attempts]
    shards = replay.shard_by_learner(events, shards=4, batch_size=7)
    owner: dict[str, int] = {}
    replayed = []
    for index, shard in enumerate(shards):
        for request in shard:
            assert len(request.events) <= 7
            for event in request.events:
                user = event.attempt.envelope.user_id
                assert owner.setdefault(user, index) == index
                replayed.append(event.attempt.envelope.event_id)
    assert sorted(replayed) == sorted(e.attempt.envelope.event_id for e in events)
    for user in owner:
        ours = [e.attempt.envelope.event_id for e in events if e.attempt.envelope.user_id == user]
        assert [i for i in replayed if i in set(ours)] == ours


def test_akt_pid_questions_become_one_attempt_with_all_their_skills(shared_data: Path) -> None:
    folder = shared_data / "assistments2009_akt_pid"
    attempts = replay.akt_pid_attempts(folder, max_learners=2)
    # The file's second learner starts with problem 8340 tagged with skills 54 and 45
    # (two rows, one answer), then problem 7372 tagged with 54 and 37.
    first_user = attempts[0].user_id
    second = [a for a in attempts if a.user_id != first_user]
    skill_names = {v: k for k, v in json.loads((folder / "skill.json").read_text()).items()}
    problems = {v: k for k, v in json.loads((folder / "problems.json").read_text()).items()}
    assert second[0].item_id == problems[8340]
    assert second[0].skill_ids == (skill_names[54], skill_names[45])
    assert second[1].item_id == problems[7372]
    assert second[1].skill_ids == (skill_names[54], skill_names[37])
    # Every row of the file is one skill of one attempt: nothing dropped, nothing added.
    rows = sum(len(a.skill_ids) for a in attempts)
    sequences = read_kt_file(folder / replay.AKT_PID_FILE, "4line")[:2]
    assert rows == sum(len(s.skill_ids) for s in sequences)
    assert len({a.row for a in attempts}) == len(attempts)


def test_rebase_keeps_each_learners_order_and_ends_recently(shared_data: Path) -> None:
    folder = shared_data / "assistments2009_akt_pid"
    attempts = replay.akt_pid_attempts(folder, max_learners=60)
    end_at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    rebased = replay.rebase_to_recent(attempts, end_at=end_at)
    assert [a.row for a in rebased] == [a.row for a in attempts]
    assert all(a.occurred_at <= end_at for a in rebased)
    assert max(a.occurred_at for a in rebased) >= end_at - timedelta(days=1)
    # Inside the dkt_retrain DAG's default 28-day lookback, so last night's run sees it all.
    assert min(a.occurred_at for a in rebased) >= end_at - timedelta(days=28)
    for user in {a.user_id for a in rebased}:
        times = [a.occurred_at for a in rebased if a.user_id == user]
        assert times == sorted(times)
        assert len(set(times)) == len(times)
    assert replay.rebase_to_recent(attempts, end_at=end_at) == rebased  # deterministic


def test_load_replay_reads_the_akt_files_with_a_learner_cap(shared_data: Path) -> None:
    dataset, attempts = replay.load_replay(shared_data, "assistments2009_akt_pid", max_learners=5)
    assert dataset == "assistments2009_akt_pid"
    assert len({a.user_id for a in attempts}) == 5


def test_item_calibration_corpus_holds_every_learners_answers_to_the_items(
    shared_data: Path,
) -> None:
    replayed = replay.akt_pid_attempts(shared_data / "assistments2009_akt_pid", max_learners=20)
    items = {a.item_id for a in replayed}
    corpus = replay.item_calibration_corpus(shared_data, "assistments2009_akt_pid", items)
    assert {a.item_id for a in corpus} == items
    # The rest of the log answered the same items too: more answers per item to fit on.
    assert len({a.user_id for a in corpus}) > 20
    assert len(corpus) > len(replayed)
    assert replay.item_calibration_corpus(shared_data, "assistments2009_pybkt_as_2020", items) == []
