"""Readers for the 3-line and pyBKT csv formats, on small texts and on the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.datasets import (
    DatasetFormatError,
    Responses,
    parse,
    parse_csv,
    parse_four_line,
    parse_three_line,
    to_responses,
)
from scheduler.exceptions import SchedulerError


def read_pybkt_csv(path: Path) -> Responses:
    return to_responses(parse_csv(path.read_text(encoding="utf-8"), path.stem))


def read_three_line(path: Path) -> Responses:
    return to_responses(parse_three_line(path.read_text(encoding="utf-8"), path.stem))


def test_three_line_blocks_become_learners() -> None:
    text = "3\n4,4,7,\n1,0,1,\n\n1\n2,\n0,\n"
    learners = parse_three_line(text, "tiny")
    assert [learner.learner_id for learner in learners] == ["tiny:0", "tiny:1"]
    responses = to_responses(learners)
    assert responses.learner.tolist() == [0, 0, 0, 1]
    assert responses.skill.tolist() == [4, 4, 7, 2]
    assert responses.correct.tolist() == [1, 0, 1, 0]
    # Integer skill ids are kept as they are.
    assert responses.skill_names[7] == "7"
    assert responses.n_learners == 2


def test_three_line_count_mismatch_names_the_block() -> None:
    with pytest.raises(DatasetFormatError, match="learner block 1"):
        parse_three_line("1\n3\n1\n2\n3,3,3\n1,0\n")
    with pytest.raises(DatasetFormatError, match="multiple of 3"):
        parse_three_line("1\n3\n")
    with pytest.raises(DatasetFormatError, match="0 or 1"):
        parse_three_line("1\n3\n2\n")


def test_pybkt_csv_orders_by_order_id_and_codes_learners_by_first_appearance() -> None:
    text = (
        "order_id,user_id,skill_name,correct\n"
        "30,u9,Box Plot,1\n"
        "10,u2,Box Plot,0\n"
        "20,u9,Circle Graph,1\n"
    )
    learners = parse_csv(text)
    assert [learner.learner_id for learner in learners] == ["u2", "u9"]
    assert learners[0].item_ids is None
    responses = to_responses(learners)
    # order_id order: u2 (10), u9 (20), u9 (30)
    assert responses.learner.tolist() == [0, 1, 1]
    assert [responses.skill_names[s] for s in responses.skill] == [
        "Box Plot",
        "Circle Graph",
        "Box Plot",
    ]
    assert responses.correct.tolist() == [0, 1, 1]


def test_pybkt_csv_missing_column_is_named() -> None:
    with pytest.raises(DatasetFormatError, match="'correct'"):
        parse_csv("user_id,skill_name\n1,2\n")


def test_real_piech_pybkt_file(shared_data: Path) -> None:
    responses = read_pybkt_csv(
        shared_data
        / "assistments2009_dkt_piech"
        / "pybkt_format"
        / "builder_train_preprocessed.csv"
    )
    # Counts from the dataset's PROVENANCE.md.
    assert responses.n_answers == 407_967
    assert responses.n_learners == 533
    assert len(np.unique(responses.skill)) == 123


def test_real_dkvmn_three_line_file(shared_data: Path) -> None:
    responses = read_three_line(
        shared_data / "assistments2009_dkvmn" / "assist2009_updated_train.csv"
    )
    # Counts from the dataset's PROVENANCE.md.
    assert responses.n_learners == 2_921
    assert responses.n_answers == 224_218
    assert len(np.unique(responses.skill)) == 110
    assert responses.correct.mean() == pytest.approx(0.6582, abs=1e-4)


def test_four_line_keeps_user_ids_and_items() -> None:
    learners = parse_four_line("1,900\n10,10,11\n3,4,3\n1,1,0\n2,901\n12\n4\n0\n")
    assert [learner.learner_id for learner in learners] == ["900", "901"]
    assert learners[0].item_ids == ("10", "10", "11")
    assert learners[0].skill_ids == ("3", "4", "3")
    assert learners[1].correct == (0,)
    with pytest.raises(DatasetFormatError, match="2 items, 1 skills"):
        parse_four_line("1,900\n10,11\n3\n1\n")


def test_csv_items_and_the_format_dispatch() -> None:
    text = "user_id,skill_name,correct,problem_id\nu1,a,1,p1\nu1,b,0,p2\n"
    (learner,) = parse(text, "csv", "x")
    assert learner.item_ids == ("p1", "p2")
    assert learner.correct == (1, 0)
    with pytest.raises(DatasetFormatError, match="unknown format"):
        parse(text, "xml", "x")  # type: ignore[arg-type]


def test_format_errors_are_scheduler_errors_not_the_kernels() -> None:
    assert issubclass(DatasetFormatError, SchedulerError)
    assert SchedulerError.__mro__[1] is Exception
