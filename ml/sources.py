"""Dataset files → :class:`ml.datasets.KTData`: any file in any format, or a shared benchmark.

The formats are parsed by :mod:`scheduler.datasets` (the one parser per format, shared
with the BKT benchmark and ``infra/replay.py``); this module reads the files, applies
an optional skill map and builds one skill and item vocabulary over all parts of a
split, so the train, validation and test parts index skills the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ml.datasets import (
    KTData,
    RawSequence,
    SourcePart,
    build_item_vocabulary,
    build_vocabulary,
    encode,
)
from ml.exceptions import DatasetFormatError, UnknownNameError
from scheduler import datasets as formats
from scheduler.datasets import CsvColumns, Format


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    """A shared dataset folder with a fixed learner split (files relative to the folder)."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    layout: Format
    note: str
    valid_files: tuple[str, ...] = ()  # empty: validation learners drawn from train


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
        ("assist2009_pid_train1.csv",),
        ("assist2009_pid_test1.csv",),
        "4line",
        "same answers as assistments2009_dkvmn with problem ids; AKT fold 1",
        ("assist2009_pid_valid1.csv",),
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
class FileSplit:
    """Train, optional validation and test data sharing one skill and item vocabulary."""

    train: KTData
    validation: KTData | None
    test: KTData


def read_text(path: Path) -> str:
    """A dataset file's text: UTF-8, else Latin-1 (ASSISTments csv exports use it)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")
    except OSError as error:
        raise DatasetFormatError(f"cannot read {path}: {error}") from error


def read_dataset_file(
    path: Path, fmt: Format, *, columns: CsvColumns | None = None
) -> list[RawSequence]:
    """One file's learners; 3-line learners are named ``<file stem>:<block index>``."""
    try:
        return formats.parse(read_text(path), fmt, path.stem, columns=columns)
    except formats.DatasetFormatError as error:
        raise DatasetFormatError(str(error)) from error


def read_kt_file(path: Path, layout: Format) -> list[RawSequence]:
    """A 3-line or 4-line file (kept for callers that name the layout)."""
    return read_dataset_file(path, layout)


def read_skill_map(path: Path) -> dict[str, str]:
    """A two-column csv ``raw skill id,skill id`` (an optional header row is skipped).

    Maps the ids found in a dataset onto the skill ids the model should use (several
    raw ids may map to one skill); ids not in the map are kept as they are.
    """
    mapping: dict[str, str] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = [part.strip() for part in line.split(",")]
        if len(fields) != 2 or not all(fields):
            raise DatasetFormatError(f"{path}:{number}: expected 'raw id,skill id', got {line!r}")
        if number == 1 and fields[0].lower() in {"raw", "from", "skill", "skill_id", "raw_id"}:
            continue
        mapping[fields[0]] = fields[1]
    return mapping


def apply_skill_map(raw: Sequence[RawSequence], mapping: dict[str, str]) -> list[RawSequence]:
    """``raw`` with every skill id passed through ``mapping`` (unmapped ids unchanged)."""
    return [
        RawSequence(
            sequence.learner_id,
            tuple(mapping.get(skill, skill) for skill in sequence.skill_ids),
            sequence.correct,
            sequence.item_ids,
        )
        for sequence in raw
    ]


def _read_part(
    paths: Sequence[Path], fmt: Format, skill_map: dict[str, str] | None, columns: CsvColumns | None
) -> tuple[list[RawSequence], list[SourcePart]]:
    sequences: list[RawSequence] = []
    parts: list[SourcePart] = []
    for path in paths:
        read_now = read_dataset_file(path, fmt, columns=columns)
        if skill_map:
            read_now = apply_skill_map(read_now, skill_map)
        sequences.extend(read_now)
        # Folder/file, not the absolute path: fingerprints must not depend on the machine.
        parts.append(SourcePart(f"{path.parent.name}/{path.name}", sum(len(s) for s in read_now)))
    return sequences, parts


def load_file_split(
    train: Sequence[Path],
    test: Sequence[Path],
    *,
    valid: Sequence[Path] = (),
    fmt: Format = "3line",
    skill_map: dict[str, str] | None = None,
    columns: CsvColumns | None = None,
    name: str = "files",
) -> FileSplit:
    """Read the parts of a split; the vocabularies cover every part (as pyKT builds them)."""
    train_raw, train_parts = _read_part(train, fmt, skill_map, columns)
    valid_raw, valid_parts = _read_part(valid, fmt, skill_map, columns)
    test_raw, test_parts = _read_part(test, fmt, skill_map, columns)
    every = train_raw + valid_raw + test_raw
    skills = build_vocabulary(every)
    items = build_item_vocabulary(every)

    def data(raw: list[RawSequence], parts: list[SourcePart], label: str) -> KTData:
        encoded = encode(raw, skills, item_vocabulary=items)
        return KTData(f"{name}:{label}", tuple(encoded), skills, tuple(parts), items)

    return FileSplit(
        data(train_raw, train_parts, "train"),
        data(valid_raw, valid_parts, "valid") if valid else None,
        data(test_raw, test_parts, "test"),
    )


def benchmark_paths(
    name: str, dataset_dir: Path
) -> tuple[BenchmarkSpec, list[Path], list[Path], list[Path]]:
    """A shared benchmark's spec and its train, validation and test file paths."""
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {sorted(BENCHMARKS)}")
    folder = dataset_dir / spec.folder
    return (
        spec,
        [folder / f for f in spec.train_files],
        [folder / f for f in spec.valid_files],
        [folder / f for f in spec.test_files],
    )


def load_benchmark(name: str, dataset_dir: Path) -> FileSplit:
    """A shared dataset's published split (``dataset_dir`` holds the dataset folders)."""
    spec, train, valid, test = benchmark_paths(name, dataset_dir)
    return load_file_split(train, test, valid=valid, fmt=spec.layout, name=name)


def load_benchmark_split(name: str, dataset_dir: Path) -> tuple[KTData, KTData]:
    """Train (with the validation files, if any) and test of a shared dataset."""
    split = load_benchmark(name, dataset_dir)
    if split.validation is None:
        return split.train, split.test
    train = split.train
    merged = KTData(
        train.name,
        train.sequences + split.validation.sequences,
        train.skill_vocabulary,
        train.sources + split.validation.sources,
        train.item_vocabulary,
    )
    return merged, split.test


def raw_benchmark_sequences(name: str, dataset_dir: Path) -> list[RawSequence]:
    """All learners of a shared dataset (train, validation, then test files), raw."""
    spec, train, valid, test = benchmark_paths(name, dataset_dir)
    sequences: list[RawSequence] = []
    for path in [*train, *valid, *test]:
        sequences.extend(read_dataset_file(path, spec.layout))
    return sequences
