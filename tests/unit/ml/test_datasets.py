"""KT file parsing, learner split, windows and the batch format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ml.datasets import (
    LearnerSequence,
    cut_windows,
    encode,
    iterate_batches,
    split_by_learner,
)
from ml.exceptions import DatasetFormatError
from ml.sources import load_benchmark_split, read_kt_file
from tests.unit.ml.synthetic import alternating_sequences

THREE_LINE = "3\n5,5,12,\n1,0,1,\n\n2\n12,7\n0,0\n1\n7,\n1,\n"
FOUR_LINE = "1,900\n10,10,11\n3,4,3\n1,1,0\n2,901\n12,13\n4,4\n0,1\n"


def test_three_line_file_is_parsed_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "tiny_train.csv"
    path.write_text(THREE_LINE)
    sequences = read_kt_file(path, "3line")
    assert [s.skill_ids for s in sequences] == [("5", "5", "12"), ("12", "7"), ("7",)]
    assert [s.correct for s in sequences] == [(1, 0, 1), (0, 0), (1,)]
    assert sum(len(s.skill_ids) for s in sequences) == 6
    assert sequences[0].learner_id == "tiny_train:0"


def test_four_line_file_keeps_users_and_items_and_unscores_repeated_items(tmp_path: Path) -> None:
    path = tmp_path / "pid.csv"
    path.write_text(FOUR_LINE)
    raw = read_kt_file(path, "4line")
    assert [s.learner_id for s in raw] == ["900", "901"]
    assert raw[0].item_ids == ("10", "10", "11")
    encoded = encode(raw, ["3", "4"])
    # The second row of item 10 is a copy of the same question for another skill.
    assert encoded[0].scored.tolist() == [True, False, True]
    assert encoded[1].scored.tolist() == [True, True]
    assert encoded[0].skills.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3\n1,2\n1,0,1\n", "count 3, 2 skills, 3 flags"),
        ("2\n1,2\n1,2\n", "0 or 1"),
        ("x\n1\n1\n", "count"),
    ],
)
def test_malformed_blocks_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=message):
        read_kt_file(path, "3line")


def test_assistments2009_dkvmn_split_matches_its_provenance_counts(shared_data: Path) -> None:
    train, test = load_benchmark_split("assistments2009_dkvmn", shared_data)
    # Counts from the folder's PROVENANCE.md (computed independently of this code).
    assert (len(train.sequences), train.num_answers) == (2921, 224218)
    assert (len(test.sequences), test.num_answers) == (1230, 101419)
    assert train.num_skills == 110
    first = train.sequences[0]
    assert len(first) == 64  # the example block in PROVENANCE.md
    assert train.skill_vocabulary[int(first.skills[39])] == "31"
    assert first.correct[:8].tolist() == [0, 1, 1, 1, 0, 0, 0, 0]


def test_akt_file_marks_multi_skill_copies(shared_data: Path) -> None:
    train, test = load_benchmark_split("assistments2009_akt_pid", shared_data)
    assert train.num_answers + test.num_answers == 325637
    assert train.num_items == test.num_items > 16_000  # problem ids (+ "unknown")
    first = next(s for s in train.sequences if s.learner_id == "82295")
    # 1366,1366,1424,1424,1413,1413,...: every second row of the pairs is a copy.
    assert first.scored[:6].tolist() == [True, False, True, False, True, False]


def test_split_by_learner_has_no_overlap_and_keeps_everyone() -> None:
    from ml.datasets import KTData

    data = KTData("synthetic", tuple(alternating_sequences(50, 5, 3)), ("a", "b", "c"))
    train, test = split_by_learner(data, 0.2, np.random.default_rng(1))
    train_ids = {s.learner_id for s in train.sequences}
    test_ids = {s.learner_id for s in test.sequences}
    assert not train_ids & test_ids
    assert len(train_ids | test_ids) == 50
    assert len(test_ids) == 10
    again, _ = split_by_learner(data, 0.2, np.random.default_rng(1))
    assert {s.learner_id for s in again.sequences} == train_ids


def _sequence(name: str, length: int, scored: list[bool] | None = None) -> LearnerSequence:
    return LearnerSequence(
        name,
        np.arange(length, dtype=np.int64) % 4,
        (np.arange(length) % 2).astype(np.int8),
        np.array(scored if scored is not None else [True] * length, dtype=np.bool_),
    )


def test_windows_cut_consecutively_and_keep_every_answer() -> None:
    windows = cut_windows([_sequence("a", 7), _sequence("b", 1)], window_length=3)
    assert [(w.learner_id, w.history_offset, len(w.skills)) for w in windows] == [
        ("a", 0, 3),
        ("a", 3, 3),
        ("a", 6, 1),
        ("b", 0, 1),
    ]  # single answers are predicted from the initial state


def test_batch_pads_and_masks() -> None:
    windows = cut_windows(
        [_sequence("a", 4, [True, True, False, True]), _sequence("b", 2)], window_length=10
    )
    (batch,) = iterate_batches(windows, batch_size=8, device=torch.device("cpu"))
    assert batch.skills.shape == (2, 4)
    assert batch.lengths.tolist() == [4, 2]
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    # Every answer is a target but a's third (an unscored copy); b is padded after 2.
    assert batch.target_mask.tolist() == [[True, True, False, True], [True, True, False, False]]
    assert batch.correct[1, 2:].tolist() == [0.0, 0.0]
    assert batch.skills.dtype == torch.int64
    assert batch.correct.dtype == torch.float32


def test_lake_round_trip_keeps_order_and_unscores_multi_skill_copies(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from ml.datasets import RawSequence, build_lake_from_dataset, load_lake

    raw = [
        RawSequence("900", ("3", "4", "3", "5"), (1, 1, 0, 1), ("10", "10", "11", "12")),
        RawSequence("901", ("4",) * 5, (0, 1, 1, 0, 1), ("13", "14", "15", "16", "17")),
    ]
    start = datetime(2024, 1, 1, 23, 58, tzinfo=UTC)  # answers cross midnight
    written = build_lake_from_dataset(raw, tmp_path, tenant_id="t1", topic="x", start=start)
    assert written == 3 + 5  # 900's item 10 is one attempt with skills 3 and 4
    again = build_lake_from_dataset(raw, tmp_path, tenant_id="t1", topic="x", start=start)
    assert again == written
    data = load_lake(tmp_path)
    assert data.num_answers == 9  # duplicates from the second build are not there
    by_learner = {s.learner_id: s for s in data.sequences}
    first = by_learner["t1:900"]
    assert [data.skill_vocabulary[i] for i in first.skills] == ["3", "4", "3", "5"]
    assert first.correct.tolist() == [1, 1, 0, 1]
    assert first.scored.tolist() == [True, False, True, True]
    assert by_learner["t1:901"].correct.tolist() == [0, 1, 1, 0, 1]
    assert {p.source.split("/")[0] for p in data.sources} == {"2024-01-01", "2024-01-02"}


def test_fingerprint_changes_with_the_learners_and_the_windowing() -> None:
    from ml.datasets import KTData, SourcePart, data_fingerprint

    sequences = tuple(alternating_sequences(10, 6, 3))
    parts = (SourcePart("lake/2024-01-01/t", 60),)
    data = KTData("d", sequences, ("a", "b", "c"), parts)
    same = KTData("renamed", tuple(reversed(sequences)), ("a", "b", "c"), parts)
    fewer = KTData("d", sequences[:9], ("a", "b", "c"), parts)
    assert data_fingerprint(data, 200) == data_fingerprint(same, 200)
    assert data_fingerprint(data, 200) != data_fingerprint(fewer, 200)
    assert data_fingerprint(data, 200) != data_fingerprint(data, 100)
