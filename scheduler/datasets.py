"""The one parser per knowledge-tracing text format (pure: the caller reads the file).

Formats (:data:`FORMATS`):

* ``3line`` (DKT, DKVMN, DKT+ files): per learner, a line with the number of answers
  ``n``, a line of ``n`` comma-separated skill ids, a line of ``n`` 0/1 flags. The
  files carry no learner id: learner ``i`` (0-based block index) is ``<source>:<i>``.
* ``4line`` (AKT ``*_pid`` files): per learner, ``index,user id`` / problem ids /
  skill ids / 0-1 flags. The learner is the user id (the header's last field).
* ``csv`` (pyBKT's format): a header naming at least ``user_id``, ``skill_name`` and
  ``correct``, optionally ``order_id`` (answers are put in that order, as pyBKT does)
  and ``problem_id`` (the item); one answer per row. Column names are configurable
  (:class:`CsvColumns`). The learner is the ``user_id`` value.

Every parser returns :class:`LearnerAnswers` per learner, in order of first
appearance, each learner's answers in the order they were given. ``ml/`` windows
them for neural models, :func:`to_responses` flattens them for :mod:`scheduler.bkt`,
and ``infra/replay.py`` turns them into events: one parse, one way to name learners.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from scheduler.exceptions import DatasetFormatError

Format = Literal["3line", "4line", "csv"]
FORMATS: tuple[str, ...] = get_args(Format)

__all__ = [
    "FORMATS",
    "CsvColumns",
    "DatasetFormatError",
    "Format",
    "LearnerAnswers",
    "Responses",
    "parse",
    "parse_csv",
    "parse_four_line",
    "parse_three_line",
    "to_responses",
]


@dataclass(frozen=True, slots=True)
class LearnerAnswers:
    """One learner's answers in order: raw skill ids, 0/1 flags, item ids when known."""

    learner_id: str
    skill_ids: tuple[str, ...]
    correct: tuple[int, ...]  # 1 correct, 0 wrong
    item_ids: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.skill_ids)


@dataclass(frozen=True, slots=True)
class CsvColumns:
    """Column names of the ``csv`` format; ``order``/``item`` may be absent from the file."""

    user: str = "user_id"
    skill: str = "skill_name"
    correct: str = "correct"
    order: str = "order_id"
    item: str = "problem_id"


@dataclass(frozen=True, slots=True, eq=False)
class Responses:
    """Answers as parallel arrays of length N (read-only), for :mod:`scheduler.bkt`.

    ``skill`` indexes ``skill_names``. Integer skill ids are kept as they are
    (``skill_names[i] == str(i)``), so two files with the same id space line up.
    ``learner`` codes are 0-based, in order of first appearance.
    """

    learner: NDArray[np.int64]
    skill: NDArray[np.int64]
    correct: NDArray[np.int8]  # 1 correct, 0 wrong
    skill_names: tuple[str, ...]

    @property
    def n_answers(self) -> int:
        """Number of answers N."""
        return len(self.correct)

    @property
    def n_learners(self) -> int:
        """Number of distinct learners."""
        return int(self.learner.max()) + 1 if self.learner.size else 0


def _ids(line: str) -> list[str]:
    # Files end their lists with a trailing comma and sometimes carry spaces or "\r".
    return [token.strip() for token in line.split(",") if token.strip()]


def _flags(tokens: Sequence[str], where: str) -> tuple[int, ...]:
    try:
        flags = tuple(int(token) for token in tokens)
    except ValueError:
        raise DatasetFormatError(f"{where}: correctness flags must be 0 or 1") from None
    if any(flag not in (0, 1) for flag in flags):
        raise DatasetFormatError(f"{where}: correctness flags must be 0 or 1")
    return flags


def _blocks(text: str, size: int, source: str) -> list[list[str]]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) % size:
        raise DatasetFormatError(
            f"{source}: {len(lines)} non-empty lines, not a multiple of {size}"
        )
    return [lines[start : start + size] for start in range(0, len(lines), size)]


def parse_three_line(text: str, source: str = "<text>") -> list[LearnerAnswers]:
    """Parse the 3-line format; block ``i`` is learner ``<source>:<i>``."""
    learners: list[LearnerAnswers] = []
    for index, (head, skill_line, flag_line) in enumerate(_blocks(text, 3, source)):
        where = f"{source}: learner block {index} (line {3 * index + 1})"
        try:
            count = int(head.rstrip(","))
        except ValueError:
            raise DatasetFormatError(f"{where}: count {head!r} is not an integer") from None
        skills = tuple(_ids(skill_line))
        flags = _flags(_ids(flag_line), where)
        if not count == len(skills) == len(flags):
            raise DatasetFormatError(
                f"{where}: count {count}, {len(skills)} skills, {len(flags)} flags"
            )
        learners.append(LearnerAnswers(f"{source}:{index}", skills, flags))
    return learners


def parse_four_line(text: str, source: str = "<text>") -> list[LearnerAnswers]:
    """Parse AKT's 4-line format; the learner is the header's last field (the user id)."""
    learners: list[LearnerAnswers] = []
    for index, (head, item_line, skill_line, flag_line) in enumerate(_blocks(text, 4, source)):
        where = f"{source}: learner block {index} (line {4 * index + 1})"
        header = _ids(head)
        items = tuple(_ids(item_line))
        skills = tuple(_ids(skill_line))
        flags = _flags(_ids(flag_line), where)
        if not len(items) == len(skills) == len(flags):
            raise DatasetFormatError(
                f"{where}: {len(items)} items, {len(skills)} skills, {len(flags)} flags"
            )
        learner = header[-1] if header else f"{source}:{index}"
        learners.append(LearnerAnswers(learner, skills, flags, items))
    return learners


def _csv_rows(text: str) -> list[list[str]]:
    if '"' in text:
        return list(csv.reader(io.StringIO(text)))
    # No quoting anywhere: a plain split is the same parse, several times faster.
    return [line.split(",") for line in text.splitlines()]


def parse_csv(
    text: str, source: str = "<text>", *, columns: CsvColumns | None = None
) -> list[LearnerAnswers]:
    """Parse the one-answer-per-row csv format (pyBKT's); see the module docstring."""
    names = columns or CsvColumns()
    rows = _csv_rows(text)
    header = [name.strip() for name in rows[0]] if rows else []
    for column in (names.user, names.skill, names.correct):
        if column not in header:
            raise DatasetFormatError(f"{source}: missing column {column!r} in header {header}")
    body = [row for row in rows[1:] if row]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DatasetFormatError(
                f"{source}: line {number} has {len(row)} fields, the header {len(header)}"
            )
    position = {name: i for i, name in enumerate(header)}
    if names.order in position:
        try:
            keys = [int(float(row[position[names.order]])) for row in body]
        except ValueError:
            raise DatasetFormatError(
                f"{source}: an {names.order!r} value is not a number"
            ) from None
        order = np.argsort(np.array(keys, dtype=np.int64), kind="stable").tolist()
    else:
        order = list(range(len(body)))
    has_items = names.item in position
    grouped: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for i in order:
        row = body[i]
        skills, flags, items = grouped.setdefault(row[position[names.user]].strip(), ([], [], []))
        skills.append(row[position[names.skill]].strip())
        flags.append(row[position[names.correct]].strip())
        if has_items:
            items.append(row[position[names.item]].strip())
    return [
        LearnerAnswers(
            user,
            tuple(skills),
            _flags(flags, f"{source}: learner {user!r}"),
            tuple(items) if has_items else None,
        )
        for user, (skills, flags, items) in grouped.items()
    ]


def parse(
    text: str, fmt: Format, source: str = "<text>", *, columns: CsvColumns | None = None
) -> list[LearnerAnswers]:
    """Dispatch on ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "3line":
        return parse_three_line(text, source)
    if fmt == "4line":
        return parse_four_line(text, source)
    if fmt == "csv":
        return parse_csv(text, source, columns=columns)
    raise DatasetFormatError(f"unknown format {fmt!r}; known: {list(FORMATS)}")


def _frozen(array: NDArray[np.generic]) -> NDArray[np.generic]:
    array.setflags(write=False)
    return array


def to_responses(learners: Sequence[LearnerAnswers]) -> Responses:
    """Flatten learners into :class:`Responses` (learner code = position in ``learners``)."""
    learner = np.repeat(
        np.arange(len(learners), dtype=np.int64), [len(seq) for seq in learners]
    ).astype(np.int64)
    names = [skill for seq in learners for skill in seq.skill_ids]
    correct = np.array([flag for seq in learners for flag in seq.correct], dtype=np.int8)
    if all(name.isdigit() for name in names):
        skill = np.array([int(name) for name in names], dtype=np.int64)
        size = int(skill.max()) + 1 if skill.size else 0
        skill_names = tuple(str(i) for i in range(size))
    else:
        vocabulary, codes = np.unique(np.array(names, dtype=str), return_inverse=True)
        skill = codes.astype(np.int64)
        skill_names = tuple(str(name) for name in vocabulary)
    return Responses(
        learner=_frozen(learner),  # type: ignore[arg-type]
        skill=_frozen(skill),  # type: ignore[arg-type]
        correct=_frozen(correct),  # type: ignore[arg-type]
        skill_names=skill_names,
    )
