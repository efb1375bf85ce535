"""Knowledge-tracing data: shared KT logs and the Parquet lake → learner sequences → batches.

Pipeline::

    read_kt_file / load_benchmark_split / load_lake   → KTData (per-learner sequences)
    split_by_learner(data, test_fraction, rng)        → train, test (no learner in both)
    cut_windows(sequences, window_length)             → Window list
    iterate_batches(windows, batch_size, rng)         → KTBatch (the ONE batch format)

**The batch format** (:class:`KTBatch`), for B windows of at most T positions,
right-padded, all tensors on the device the caller asked for:

=============== ============ =====================================================
field           shape/dtype  meaning
=============== ============ =====================================================
skills          [B, T] int64 skill index in [0, num_skills) of the answer at t; 0 at padding
correct         [B, T] f32   1.0 correct, 0.0 wrong; 0.0 at padding
mask            [B, T] bool  True where t is a real answer (t < lengths[b])
target_mask     [B, T] bool  True where answer t is scored: real, t >= 1 (something
                             came before it in the window) and not a repeated copy of a
                             multi-skill question (see "Leakage" below)
lengths         [B] int64    real answers in the window, in [2, T]
history_offset  [B] int64    answers of the same learner before this window
=============== ============ =====================================================

Models read ``skills[:, :-1]``, ``correct[:, :-1]`` and predict answer ``t`` from the
answers before it with query skill ``skills[:, t]``; losses and metrics use
``correct[:, 1:]`` where ``target_mask[:, 1:]``. The learner's history length before
answer t is ``history_offset + t`` (used for per-subgroup metrics).

**Windows.** A learner's sequence is cut into consecutive non-overlapping windows of
``window_length`` answers (DKVMN/pyKT protocol, 200 by default); each window starts
from an empty model state; windows with fewer than 2 answers have no target and are
dropped.

**Leakage.** ASSISTments logs expand a question tagged with k skills into k
consecutive rows with the same answer. Predicting copy 2..k from copy 1 leaks the
answer and inflates AUC (pyKT's "leakage-free" protocol evaluates per question). Where
the data knows the question (4-line AKT files with problem ids; the lake, where one
attempt event carries all its skills), copies 2..k are kept as inputs but have
``scored = False``, so they are neither trained on nor evaluated. The 3-line files
(``assistments2009_dkvmn`` and the others without problem ids) cannot tell a
multi-skill copy from a new question; their figures include the leak, exactly as the
published DKVMN-split numbers (~0.805 AUC for DKT on ASSIST2009) do.
``assistments2009_akt_pid`` holds the same answers with problem ids and shows the size
of the effect.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch

from learnstream import lake
from ml.exceptions import DatasetFormatError, UnknownNameError

Layout = Literal["3line", "4line"]
DEFAULT_WINDOW_LENGTH = 200


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    """A shared dataset folder with a fixed learner split (files relative to the folder)."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    layout: Layout
    note: str


# The shared datasets with a published train/test split (see each PROVENANCE.md).
BENCHMARKS: dict[str, BenchmarkSpec] = {
    "assistments2009_dkvmn": BenchmarkSpec(
        "assistments2009_dkvmn",
        ("assist2009_updated_train.csv",),
        ("assist2009_updated_test.csv",),
        "3line",
        "ASSIST2009 DKVMN split; skill ids only (multi-skill copies not detectable)",
    ),
    "assistments2009_akt_pid": BenchmarkSpec(
        "assistments2009_akt_pid",
        ("assist2009_pid_train1.csv", "assist2009_pid_valid1.csv"),
        ("assist2009_pid_test1.csv",),
        "4line",
        "same answers as assistments2009_dkvmn with problem ids; AKT fold 1",
    ),
    "assistments2015_dkvmn": BenchmarkSpec(
        "assistments2015_dkvmn",
        ("assist2015_train.csv",),
        ("assist2015_test.csv",),
        "3line",
        "ASSIST2015 DKVMN split; 100 problem sets as skills",
    ),
    "assistments2017_dktplus": BenchmarkSpec(
        "assistments2017_dktplus",
        ("assistment_challenge_train.csv",),
        ("assistment_challenge_test.csv",),
        "3line",
        "ASSISTments 2017 challenge, DKT+ split; long sequences",
    ),
    "assistments2009_dktplus": BenchmarkSpec(
        "assistments2009_dktplus",
        ("skill_id_train.csv",),
        ("skill_id_test.csv",),
        "3line",
        "ASSIST2009 de-duplicated (DKT+)",
    ),
}


@dataclass(frozen=True, slots=True)
class RawSequence:
    """One learner's answers as read from a file: raw skill and item ids as strings."""

    learner_id: str
    skill_ids: tuple[str, ...]
    correct: tuple[int, ...]  # 1 correct, 0 wrong
    item_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LearnerSequence:
    """One learner's answers in time order, skills mapped to vocabulary indices."""

    learner_id: str
    skills: npt.NDArray[np.int64]  # in [0, num_skills)
    correct: npt.NDArray[np.int8]  # 1 correct, 0 wrong
    scored: npt.NDArray[np.bool_]  # False for copies 2..k of a multi-skill question

    def __len__(self) -> int:
        return int(self.skills.shape[0])


@dataclass(frozen=True, slots=True)
class SourcePart:
    """One input of a dataset (a file, or a lake partition) and how many answers it gave."""

    source: str
    rows: int


@dataclass(frozen=True, slots=True)
class KTData:
    """Per-learner sequences plus the skill vocabulary (index → raw skill id)."""

    name: str
    sequences: tuple[LearnerSequence, ...]
    skill_vocabulary: tuple[str, ...]
    sources: tuple[SourcePart, ...] = field(default_factory=tuple)

    @property
    def num_skills(self) -> int:
        return len(self.skill_vocabulary)

    @property
    def num_answers(self) -> int:
        return sum(len(s) for s in self.sequences)

    def subset(self, learner_ids: Sequence[str], name: str) -> KTData:
        """The same data restricted to these learners (vocabulary kept)."""
        wanted = set(learner_ids)
        kept = tuple(s for s in self.sequences if s.learner_id in wanted)
        return KTData(name, kept, self.skill_vocabulary, self.sources)


# --- reading the KT text formats ---------------------------------------------------


def _ids(line: str) -> list[str]:
    # Files end their lists with a trailing comma and sometimes carry spaces or "\r".
    return [token.strip() for token in line.strip().split(",") if token.strip()]


def read_kt_file(path: Path, layout: Layout) -> list[RawSequence]:
    """Read a 3-line (n / skills / 0-1) or 4-line (index,user / problems / skills / 0-1) file.

    Learner ids are ``<file stem>:<block index>`` for 3-line files (they carry no id)
    and the original user id for 4-line files. Raises :class:`DatasetFormatError`
    naming the file and line when a block is inconsistent.
    """
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    block = 3 if layout == "3line" else 4
    if len(lines) % block:
        raise DatasetFormatError(f"{path}: {len(lines)} non-empty lines, not a multiple of {block}")
    sequences: list[RawSequence] = []
    for index, start in enumerate(range(0, len(lines), block)):
        where = f"{path}:{start + 1}"
        if layout == "3line":
            header, skill_line, correct_line = lines[start : start + 3]
            item_ids = None
            learner_id = f"{path.stem}:{index}"
            try:
                expected = int(header.strip().rstrip(","))
            except ValueError as error:
                raise DatasetFormatError(f"{where}: expected a count, got {header!r}") from error
        else:
            header, item_line, skill_line, correct_line = lines[start : start + 4]
            parts = _ids(header)
            learner_id = parts[-1] if parts else f"{path.stem}:{index}"
            item_ids = tuple(_ids(item_line))
            expected = len(item_ids)
        skill_ids = tuple(_ids(skill_line))
        try:
            correct = tuple(int(flag) for flag in _ids(correct_line))
        except ValueError as error:
            raise DatasetFormatError(f"{where}: correctness flags must be 0 or 1") from error
        if len(skill_ids) != expected or len(correct) != expected:
            raise DatasetFormatError(
                f"{where}: expected {expected} answers, got {len(skill_ids)} skills "
                f"and {len(correct)} flags"
            )
        if any(flag not in (0, 1) for flag in correct):
            raise DatasetFormatError(f"{where}: correctness flags must be 0 or 1")
        sequences.append(RawSequence(learner_id, skill_ids, correct, item_ids))
    return sequences


def _skill_order(skill_id: str) -> tuple[int, int | str]:
    # Numeric ids sort as numbers ("2" before "10"), others after them as text.
    return (0, int(skill_id)) if skill_id.isdigit() else (1, skill_id)


def build_vocabulary(sequences: Sequence[RawSequence]) -> tuple[str, ...]:
    """Every skill id seen, numeric ids in numeric order, then the rest alphabetically."""
    seen = {skill for sequence in sequences for skill in sequence.skill_ids}
    return tuple(sorted(seen, key=_skill_order))


def repeat_copy_mask(item_ids: Sequence[str]) -> npt.NDArray[np.bool_]:
    """True where an answer is scored: False for the 2nd..kth consecutive row of one item."""
    scored = np.ones(len(item_ids), dtype=np.bool_)
    for t in range(1, len(item_ids)):
        if item_ids[t] == item_ids[t - 1]:
            scored[t] = False
    return scored


def encode(
    raw: Sequence[RawSequence], vocabulary: Sequence[str], *, drop_unknown: bool = False
) -> list[LearnerSequence]:
    """Map raw skill ids to vocabulary indices.

    Unknown skills raise :class:`DatasetFormatError`, or are dropped with
    ``drop_unknown`` (serving a model trained on another vocabulary).
    """
    index = {skill: i for i, skill in enumerate(vocabulary)}
    encoded: list[LearnerSequence] = []
    for sequence in raw:
        scored = (
            repeat_copy_mask(sequence.item_ids)
            if sequence.item_ids is not None
            else np.ones(len(sequence.skill_ids), dtype=np.bool_)
        )
        known = np.array([skill in index for skill in sequence.skill_ids], dtype=np.bool_)
        if not known.all() and not drop_unknown:
            missing = sorted({s for s in sequence.skill_ids if s not in index})
            raise DatasetFormatError(f"learner {sequence.learner_id}: unknown skills {missing[:5]}")
        skills = np.array(
            [index[s] for s, k in zip(sequence.skill_ids, known, strict=True) if k], dtype=np.int64
        )
        correct = np.array(sequence.correct, dtype=np.int8)[known]
        encoded.append(LearnerSequence(sequence.learner_id, skills, correct, scored[known]))
    return encoded


def load_benchmark_split(name: str, dataset_dir: Path) -> tuple[KTData, KTData]:
    """A shared dataset's published train and test split, sharing one skill vocabulary.

    ``dataset_dir`` is the folder holding the dataset folders (``settings.dataset_dir``).
    """
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {sorted(BENCHMARKS)}")
    folder = dataset_dir / spec.folder

    def read(files: tuple[str, ...]) -> tuple[list[RawSequence], list[SourcePart]]:
        sequences: list[RawSequence] = []
        parts: list[SourcePart] = []
        for file_name in files:
            read_now = read_kt_file(folder / file_name, spec.layout)
            sequences.extend(read_now)
            rows = sum(len(s.skill_ids) for s in read_now)
            parts.append(SourcePart(f"{spec.folder}/{file_name}", rows))
        return sequences, parts

    train_raw, train_parts = read(spec.train_files)
    test_raw, test_parts = read(spec.test_files)
    vocabulary = build_vocabulary(train_raw + test_raw)
    train = KTData(
        f"{name}:train", tuple(encode(train_raw, vocabulary)), vocabulary, tuple(train_parts)
    )
    test = KTData(
        f"{name}:test", tuple(encode(test_raw, vocabulary)), vocabulary, tuple(test_parts)
    )
    return train, test


# --- the lake ------------------------------------------------------------------------

_LAKE_COLUMNS = (
    "event_id",
    "tenant_id",
    "user_id",
    "occurred_at",
    "kafka_partition",
    "kafka_offset",
    "item_id",
    "skill_ids",
    "correct",
)


def lake_raw_sequences(table: pa.Table) -> list[RawSequence]:
    """Attempt rows → one raw sequence per learner (``tenant_id:user_id``), ordered by occurred_at.

    Duplicate ``event_id`` rows (a record consumed twice) count once. An attempt with k
    skills becomes k consecutive answers of the same item: copies 2..k are not scored.
    Ties in ``occurred_at`` keep Kafka order (one learner's events share a partition).
    """
    if table.num_rows == 0:
        return []
    table = table.sort_by(
        [
            ("tenant_id", "ascending"),
            ("user_id", "ascending"),
            ("occurred_at", "ascending"),
            ("kafka_partition", "ascending"),
            ("kafka_offset", "ascending"),
        ]
    )
    rows = table.select(list(_LAKE_COLUMNS)).to_pylist()
    seen_events: set[str] = set()
    grouped: dict[str, tuple[list[str], list[int], list[str]]] = {}
    for row in rows:
        if row["event_id"] in seen_events:
            continue
        seen_events.add(row["event_id"])
        skills, correct, items = grouped.setdefault(
            f"{row['tenant_id']}:{row['user_id']}", ([], [], [])
        )
        # The attempt id stands for the question: copies of one attempt are one question.
        for skill in row["skill_ids"]:
            skills.append(skill)
            correct.append(int(row["correct"]))
            items.append(row["event_id"])
    return [
        RawSequence(learner, tuple(skills), tuple(correct), tuple(items))
        for learner, (skills, correct, items) in grouped.items()
    ]


def load_lake(
    root: Path,
    *,
    name: str = "lake",
    start_date: date | None = None,
    end_date: date | None = None,
    tenant_ids: Sequence[str] | None = None,
    vocabulary: Sequence[str] | None = None,
) -> KTData:
    """Learner sequences from the lake (inclusive UTC date range, tenants), with the snapshot.

    ``vocabulary`` fixes the skill index (a trained model's); skills outside it are
    dropped. Without it the vocabulary is built from the rows read.
    """
    table = lake.read_attempts(
        root, start_date=start_date, end_date=end_date, tenant_ids=tenant_ids, columns=_LAKE_COLUMNS
    )
    raw = lake_raw_sequences(table)
    skills = tuple(vocabulary) if vocabulary is not None else build_vocabulary(raw)
    parts = tuple(
        SourcePart(f"{p.event_date.isoformat()}/{p.tenant_id}", p.rows)
        for p in lake.list_partitions(
            root, start_date=start_date, end_date=end_date, tenant_ids=tenant_ids
        )
    )
    sequences = encode(raw, skills, drop_unknown=vocabulary is not None)
    return KTData(name, tuple(sequences), skills, parts)


def build_lake_from_dataset(
    raw: Sequence[RawSequence],
    root: Path,
    *,
    tenant_id: str,
    topic: str,
    start: datetime,
    answer_interval: timedelta = timedelta(seconds=90),
    learner_interval: timedelta = timedelta(hours=1),
    partitions: int = 4,
) -> int:
    """Write shared-dataset learners into a lake with synthetic timestamps; returns attempts.

    Learner i starts at ``start + i * learner_interval`` and answers every
    ``answer_interval``. Consecutive rows of one item (4-line files) become one
    attempt with several skills; 3-line rows get item id ``skill-<id>``. The Kafka
    partition is a stable hash of the learner, offsets count up per partition, and
    event ids are UUID5 of (tenant, learner, position): running it twice writes the
    same files.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    per_partition: dict[int, list[lake.LakeAttempt]] = {p: [] for p in range(partitions)}
    for learner_index, sequence in enumerate(raw):
        digest = hashlib.sha256(f"{tenant_id}:{sequence.learner_id}".encode()).digest()
        partition = int.from_bytes(digest[:4], "big") % partitions
        items = sequence.item_ids or tuple(f"skill-{s}" for s in sequence.skill_ids)
        began = start.astimezone(UTC) + learner_index * learner_interval
        position = 0
        t = 0
        while t < len(items):
            end = t + 1
            while end < len(items) and items[end] == items[t]:
                end += 1
            batch = per_partition[partition]
            batch.append(
                lake.LakeAttempt(
                    event_id=str(
                        uuid.uuid5(
                            uuid.NAMESPACE_URL, f"{tenant_id}/{sequence.learner_id}/{position}"
                        )
                    ),
                    tenant_id=tenant_id,
                    user_id=sequence.learner_id,
                    occurred_at=began + position * answer_interval,
                    item_id=items[t],
                    skill_ids=tuple(dict.fromkeys(sequence.skill_ids[t:end])),
                    correct=bool(sequence.correct[t]),
                    kafka_partition=partition,
                    kafka_offset=len(batch),
                    score=float(sequence.correct[t]),
                    attempt_number=1,
                    context="PRACTICE",
                )
            )
            position += 1
            t = end
    written = 0
    for partition, attempts in per_partition.items():
        if attempts:
            lake.write_attempts(
                root, lake.attempts_table(attempts), topic=topic, partition=partition
            )
            written += len(attempts)
    return written


# --- splitting, windows, batches ------------------------------------------------------


def split_by_learner(
    data: KTData, test_fraction: float, rng: np.random.Generator
) -> tuple[KTData, KTData]:
    """Random learner-level split: no learner is in both parts. ``test_fraction`` in (0, 1)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    learners = sorted({s.learner_id for s in data.sequences})
    order = rng.permutation(len(learners))
    n_test = max(1, round(test_fraction * len(learners)))
    test_ids = [learners[i] for i in order[:n_test]]
    train_ids = [learners[i] for i in order[n_test:]]
    return data.subset(train_ids, f"{data.name}:train"), data.subset(test_ids, f"{data.name}:test")


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``window_length`` consecutive answers of one learner."""

    learner_id: str
    skills: npt.NDArray[np.int64]
    correct: npt.NDArray[np.int8]
    scored: npt.NDArray[np.bool_]
    history_offset: int  # answers of this learner before the window


def cut_windows(sequences: Sequence[LearnerSequence], window_length: int) -> list[Window]:
    """Consecutive non-overlapping windows; those with fewer than 2 answers are dropped."""
    if window_length < 2:
        raise ValueError(f"window_length must be >= 2, got {window_length}")
    windows: list[Window] = []
    for sequence in sequences:
        for start in range(0, len(sequence), window_length):
            stop = min(start + window_length, len(sequence))
            if stop - start < 2:
                continue
            windows.append(
                Window(
                    sequence.learner_id,
                    sequence.skills[start:stop],
                    sequence.correct[start:stop],
                    sequence.scored[start:stop],
                    start,
                )
            )
    return windows


@dataclass(frozen=True, slots=True)
class KTBatch:
    """The one batch format; see the module docstring for every field's meaning."""

    skills: torch.Tensor  # [B, T] int64
    correct: torch.Tensor  # [B, T] float32
    mask: torch.Tensor  # [B, T] bool
    target_mask: torch.Tensor  # [B, T] bool
    lengths: torch.Tensor  # [B] int64
    history_offset: torch.Tensor  # [B] int64

    @property
    def size(self) -> int:
        return int(self.skills.shape[0])


def collate(windows: Sequence[Window], device: torch.device) -> KTBatch:
    """Pad windows to the longest one and stack them into a :class:`KTBatch` on ``device``."""
    width = max(len(w.skills) for w in windows)
    shape = (len(windows), width)
    skills = np.zeros(shape, dtype=np.int64)
    correct = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.bool_)
    target = np.zeros(shape, dtype=np.bool_)
    for row, window in enumerate(windows):
        n = len(window.skills)
        skills[row, :n] = window.skills
        correct[row, :n] = window.correct
        mask[row, :n] = True
        target[row, 1:n] = window.scored[1:n]
    return KTBatch(
        skills=torch.from_numpy(skills).to(device),
        correct=torch.from_numpy(correct).to(device),
        mask=torch.from_numpy(mask).to(device),
        target_mask=torch.from_numpy(target).to(device),
        lengths=torch.tensor([len(w.skills) for w in windows], dtype=torch.int64, device=device),
        history_offset=torch.tensor(
            [w.history_offset for w in windows], dtype=torch.int64, device=device
        ),
    )


def iterate_batches(
    windows: Sequence[Window],
    batch_size: int,
    device: torch.device,
    rng: np.random.Generator | None = None,
) -> Iterator[KTBatch]:
    """Batches of ``batch_size`` windows, shuffled by ``rng`` (in order when ``None``)."""
    order = rng.permutation(len(windows)) if rng is not None else np.arange(len(windows))
    for start in range(0, len(order), batch_size):
        yield collate([windows[i] for i in order[start : start + batch_size]], device)


def data_fingerprint(data: KTData, window_length: int) -> str:
    """A short stable id of an evaluation set: sources, row counts, learners, answers, windows.

    Two sets with the same fingerprint score the same answers, so AUCs on them compare.
    """
    digest = hashlib.sha256()
    for part in data.sources:
        digest.update(f"{part.source}={part.rows};".encode())
    for sequence in sorted(data.sequences, key=lambda s: s.learner_id):
        digest.update(f"{sequence.learner_id}:{len(sequence)};".encode())
    digest.update(f"window={window_length}".encode())
    return digest.hexdigest()[:16]


def raw_benchmark_sequences(name: str, dataset_dir: Path) -> list[RawSequence]:
    """All learners of a shared dataset (train then test files), as raw sequences."""
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {sorted(BENCHMARKS)}")
    sequences: list[RawSequence] = []
    for file_name in spec.train_files + spec.test_files:
        sequences.extend(read_kt_file(dataset_dir / spec.folder / file_name, spec.layout))
    return sequences
