"""Knowledge-tracing data: learner sequences → windows → the one batch format.

Pipeline::

    ml.sources (files, benchmarks) / load_lake        → KTData (per-learner sequences)
    split_by_learner(data, test_fraction, rng)        → train, test (no learner in both)
    cut_windows(sequences, window_length)             → Window list
    iterate_batches(windows, batch_size, rng)         → KTBatch (the ONE batch format)

**The batch format** (:class:`KTBatch`), for B windows of at most T positions,
right-padded, all tensors on the device the caller asked for:

=============== ============ =====================================================
field           shape/dtype  meaning
=============== ============ =====================================================
skills          [B, T] int64 skill index in [0, num_skills) of the answer at t; 0 at padding
items           [B, T] int64 item index in [0, num_items), 0 = unknown item or padding
correct         [B, T] f32   1.0 correct, 0.0 wrong; 0.0 at padding
mask            [B, T] bool  True where t is a real answer (t < lengths[b])
target_mask     [B, T] bool  True where answer t is scored: real and not a repeated
                             copy of a multi-skill question (see "Leakage" below)
lengths         [B] int64    real answers in the window, in [1, T]
history_offset  [B] int64    answers of the same learner before this window
=============== ============ =====================================================

Models read the whole window and return one logit per position: logit ``t`` predicts
``correct[:, t]`` from the answers ``0..t-1`` and the skill/item asked at ``t``; the
first answer of a window is predicted from the model's initial state. Losses and
metrics use every position where ``target_mask`` is set, so every answer is scored.
The learner's history length before answer t is ``history_offset + t``.

**Windows.** A learner's sequence is cut into consecutive non-overlapping windows of
``window_length`` answers (DKVMN/pyKT protocol, 200 by default); each window starts
from an empty model state.

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

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch

from learnstream import lake
from ml.exceptions import DatasetFormatError
from scheduler.datasets import LearnerAnswers

DEFAULT_WINDOW_LENGTH = 200

# One learner's answers as parsed from a file or the lake (raw skill and item ids).
RawSequence = LearnerAnswers


@dataclass(frozen=True, slots=True)
class LearnerSequence:
    """One learner's answers in time order, skills (and items) mapped to vocabulary indices."""

    learner_id: str
    skills: npt.NDArray[np.int64]  # in [0, num_skills)
    correct: npt.NDArray[np.int8]  # 1 correct, 0 wrong
    scored: npt.NDArray[np.bool_]  # False for copies 2..k of a multi-skill question
    # In [0, num_items): 1 + index in KTData.item_vocabulary, 0 where no item id is known.
    items: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return int(self.skills.shape[0])

    def item_indices(self) -> npt.NDArray[np.int64]:
        """``items``, or zeros (no item known) when the data has no item ids."""
        if self.items is None:
            return np.zeros(len(self), dtype=np.int64)
        return self.items


@dataclass(frozen=True, slots=True)
class SourcePart:
    """One input of a dataset (a file, or a lake partition) and how many answers it gave."""

    source: str
    rows: int


@dataclass(frozen=True, slots=True)
class KTData:
    """Per-learner sequences plus the skill vocabulary (index → raw skill id).

    ``item_vocabulary`` lists the item (question) ids; item index ``i + 1`` is
    ``item_vocabulary[i]`` and 0 means "unknown item" (empty for skill-only data).
    """

    name: str
    sequences: tuple[LearnerSequence, ...]
    skill_vocabulary: tuple[str, ...]
    sources: tuple[SourcePart, ...] = field(default_factory=tuple)
    item_vocabulary: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_skills(self) -> int:
        return len(self.skill_vocabulary)

    @property
    def num_items(self) -> int:
        """Item indices in use, the "unknown" 0 included (1 for skill-only data)."""
        return len(self.item_vocabulary) + 1

    @property
    def num_answers(self) -> int:
        return sum(len(s) for s in self.sequences)

    def subset(self, learner_ids: Sequence[str], name: str) -> KTData:
        """The same data restricted to these learners (vocabularies kept)."""
        wanted = set(learner_ids)
        kept = tuple(s for s in self.sequences if s.learner_id in wanted)
        return KTData(name, kept, self.skill_vocabulary, self.sources, self.item_vocabulary)

    def head(self, learners: int) -> KTData:
        """The first ``learners`` learners (quick runs on a slice)."""
        return KTData(
            self.name,
            self.sequences[:learners],
            self.skill_vocabulary,
            self.sources,
            self.item_vocabulary,
        )


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


def build_item_vocabulary(sequences: Sequence[RawSequence]) -> tuple[str, ...]:
    """Every item id seen (same order as skills); empty when no sequence has item ids."""
    seen = {item for sequence in sequences for item in (sequence.item_ids or ())}
    return tuple(sorted(seen, key=_skill_order))


def encode(
    raw: Sequence[RawSequence],
    vocabulary: Sequence[str],
    *,
    item_vocabulary: Sequence[str] = (),
    drop_unknown: bool = False,
) -> list[LearnerSequence]:
    """Map raw skill ids to vocabulary indices (and item ids to ``1 + index``, 0 if unknown).

    Unknown skills raise :class:`DatasetFormatError`, or are dropped with
    ``drop_unknown`` (serving a model trained on another vocabulary).
    """
    index = {skill: i for i, skill in enumerate(vocabulary)}
    item_index = {item: i + 1 for i, item in enumerate(item_vocabulary)}
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
        items = None
        if item_index and sequence.item_ids is not None:
            items = np.array([item_index.get(i, 0) for i in sequence.item_ids], dtype=np.int64)[
                known
            ]
        encoded.append(LearnerSequence(sequence.learner_id, skills, correct, scored[known], items))
    return encoded


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
    items: npt.NDArray[np.int64] | None = None  # item indices, 0 = unknown

    def item_indices(self) -> npt.NDArray[np.int64]:
        """``items``, or zeros when the data has no item ids."""
        return self.items if self.items is not None else np.zeros_like(self.skills)


def cut_windows(sequences: Sequence[LearnerSequence], window_length: int) -> list[Window]:
    """Consecutive non-overlapping windows of at most ``window_length`` answers.

    Every answer lands in exactly one window (a 1-answer tail is a window too): the
    first answer of a window is predicted from the model's initial state.
    """
    if window_length < 2:
        raise ValueError(f"window_length must be >= 2, got {window_length}")
    windows: list[Window] = []
    for sequence in sequences:
        for start in range(0, len(sequence), window_length):
            stop = min(start + window_length, len(sequence))
            windows.append(
                Window(
                    sequence.learner_id,
                    sequence.skills[start:stop],
                    sequence.correct[start:stop],
                    sequence.scored[start:stop],
                    start,
                    None if sequence.items is None else sequence.items[start:stop],
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
    items: torch.Tensor  # [B, T] int64, 0 = unknown item / padding

    @property
    def size(self) -> int:
        return int(self.skills.shape[0])


def collate(windows: Sequence[Window], device: torch.device) -> KTBatch:
    """Pad windows to the longest one and stack them into a :class:`KTBatch` on ``device``."""
    width = max(len(w.skills) for w in windows)
    shape = (len(windows), width)
    skills = np.zeros(shape, dtype=np.int64)
    items = np.zeros(shape, dtype=np.int64)
    correct = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.bool_)
    target = np.zeros(shape, dtype=np.bool_)
    for row, window in enumerate(windows):
        n = len(window.skills)
        skills[row, :n] = window.skills
        items[row, :n] = window.item_indices()
        correct[row, :n] = window.correct
        mask[row, :n] = True
        target[row, :n] = window.scored
    return KTBatch(
        skills=torch.from_numpy(skills).to(device),
        correct=torch.from_numpy(correct).to(device),
        mask=torch.from_numpy(mask).to(device),
        target_mask=torch.from_numpy(target).to(device),
        lengths=torch.tensor([len(w.skills) for w in windows], dtype=torch.int64, device=device),
        history_offset=torch.tensor(
            [w.history_offset for w in windows], dtype=torch.int64, device=device
        ),
        items=torch.from_numpy(items).to(device),
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
