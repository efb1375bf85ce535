"""Readers for the knowledge-tracing text formats (pure parsing; the path is an argument).

* 3-line format (DKT, DKVMN, DKT+ files): per learner, a line with the number of
  answers ``n``, a line of ``n`` comma-separated skill ids, a line of ``n`` 0/1 flags.
* pyBKT csv: a header row naming at least ``user_id``, ``skill_name`` and
  ``correct`` (optionally ``order_id``), one answer per row.

Both return :class:`Responses`: flat arrays, one entry per answer, in the order
each learner gave them, ready for :func:`scheduler.bkt.build_sequences`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


class DatasetFormatError(ValueError):
    """The text does not follow the format its reader expects (the message says where)."""


@dataclass(frozen=True, slots=True, eq=False)
class Responses:
    """Answers as parallel arrays of length N (read-only).

    ``skill`` indexes ``skill_names``. Integer skill ids are kept as they are
    (``skill_names[i] == str(i)``), so two files with the same id space line up.
    ``learner`` codes are 0-based, in order of first appearance in the file.
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


def _frozen(array: NDArray[np.generic]) -> NDArray[np.generic]:
    array.setflags(write=False)
    return array


def _responses(
    learner: NDArray[np.int64], names: list[str], correct: NDArray[np.int64], where: str
) -> Responses:
    if correct.size and not np.isin(correct, (0, 1)).all():
        raise DatasetFormatError(f"{where}: correctness flags must be 0 or 1")
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
        correct=_frozen(correct.astype(np.int8)),  # type: ignore[arg-type]
        skill_names=skill_names,
    )


def parse_three_line(text: str, source: str = "<text>") -> Responses:
    """Parse the 3-line format; every block is one learner (learner code = block index)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) % 3:
        raise DatasetFormatError(f"{source}: {len(lines)} non-empty lines, not a multiple of 3")
    counts: list[int] = []
    skills: list[str] = []
    flags: list[str] = []
    for block in range(len(lines) // 3):
        head, skill_line, flag_line = lines[3 * block : 3 * block + 3]
        where = f"{source}: learner block {block} (line {3 * block + 1})"
        try:
            count = int(head.rstrip(","))
        except ValueError:
            raise DatasetFormatError(f"{where}: count {head!r} is not an integer") from None
        block_skills = [s for s in skill_line.split(",") if s.strip()]
        block_flags = [f for f in flag_line.split(",") if f.strip()]
        if not count == len(block_skills) == len(block_flags):
            raise DatasetFormatError(
                f"{where}: count {count}, {len(block_skills)} skills, {len(block_flags)} flags"
            )
        counts.append(count)
        skills.extend(s.strip() for s in block_skills)
        flags.extend(block_flags)
    learner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    try:
        correct = np.array(flags, dtype=np.int64)
    except ValueError:
        raise DatasetFormatError(f"{source}: a correctness flag is not an integer") from None
    return _responses(learner, skills, correct, source)


def read_three_line(path: Path) -> Responses:
    """Read a 3-line-format file (UTF-8)."""
    return parse_three_line(path.read_text(encoding="utf-8"), source=str(path))


def parse_pybkt_csv(
    text: str,
    source: str = "<text>",
    *,
    user_column: str = "user_id",
    skill_column: str = "skill_name",
    correct_column: str = "correct",
    order_column: str = "order_id",
) -> Responses:
    """Parse pyBKT's csv format.

    Rows are put in ``order_column`` order when that column exists (pyBKT sorts by
    it too), else kept in file order. Learners are grouped by ``user_column``
    exactly as pyBKT groups them, whatever that column holds.
    """
    rows = _csv_rows(text)
    header = [name.strip() for name in rows[0]] if rows else []
    for column in (user_column, skill_column, correct_column):
        if column not in header:
            raise DatasetFormatError(f"{source}: missing column {column!r} in header {header}")
    body = [row for row in rows[1:] if row]
    if any(len(row) != len(header) for row in body):
        raise DatasetFormatError(f"{source}: a row's field count differs from the header's")
    columns = list(zip(*body, strict=True)) if body else [() for _ in header]
    users = list(columns[header.index(user_column)])
    names = [name.strip() for name in columns[header.index(skill_column)]]
    flags = list(columns[header.index(correct_column)])
    has_order = order_column in header
    orders = list(columns[header.index(order_column)]) if has_order else []
    try:
        correct = np.array(flags, dtype=np.int64)
    except ValueError:
        raise DatasetFormatError(
            f"{source}: a {correct_column!r} value is not an integer"
        ) from None
    order = np.arange(len(users))
    if has_order:
        order = np.argsort(np.array(orders, dtype=np.int64), kind="stable")
    _, first_seen, codes = np.unique(
        np.array(users, dtype=str)[order], return_index=True, return_inverse=True
    )
    # Codes in order of first appearance, not sorted order.
    rank = np.empty(len(first_seen), dtype=np.int64)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(len(first_seen))
    learner = rank[codes].astype(np.int64)
    return _responses(learner, [names[i] for i in order], correct[order], source)


def _csv_rows(text: str) -> list[list[str]]:
    if '"' in text:
        return list(csv.reader(io.StringIO(text)))
    # No quoting anywhere: a plain split is the same parse, several times faster.
    return [line.split(",") for line in text.splitlines()]


def read_pybkt_csv(path: Path) -> Responses:
    """Read a pyBKT-format csv file (UTF-8; pyBKT itself reads latin-1, same for ASCII files)."""
    return parse_pybkt_csv(path.read_text(encoding="utf-8"), source=str(path))
