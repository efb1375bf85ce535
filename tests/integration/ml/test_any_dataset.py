"""Any dataset, two commands: ``python -m ml train`` and ``python -m ml predict`` on real slices.

Small slices of the shared logs in each of the three formats (3-line DKVMN split,
4-line AKT split with problem ids, pyBKT's ``as.csv``) go through the same commands
with no code edit: train (validation file, early stopping, tiny model, one thread),
save, then predict one row per test answer, the first answer of every learner
included. No MLflow (``--no-register``); checkpoints go to a temporary data dir.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from learnstream.settings import get_settings
from ml.__main__ import main
from ml.sources import read_dataset_file
from scheduler.datasets import Format


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LEARNSTREAM_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    get_settings.cache_clear()


def _block_slice(source: Path, target: Path, lines: int, start: int, count: int) -> Path:
    """Learners ``start .. start+count`` of a block format file (``lines`` per learner)."""
    kept = [line for line in source.read_text().splitlines() if line.strip()]
    target.write_text("\n".join(kept[start * lines : (start + count) * lines]) + "\n")
    return target


def _csv_slice(source: Path, target: Path, users: set[str]) -> Path:
    with source.open(encoding="latin-1", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        column = header.index("user_id")
        rows = [row for row in reader if row[column] in users]
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return target


def _slices(shared: Path, folder: Path, fmt: Format) -> tuple[Path, Path, Path]:
    if fmt == "3line":
        source = shared / "assistments2009_dkvmn" / "assist2009_updated_train.csv"
        test = shared / "assistments2009_dkvmn" / "assist2009_updated_test.csv"
        return (
            _block_slice(source, folder / "train.csv", 3, 0, 40),
            _block_slice(source, folder / "valid.csv", 3, 40, 15),
            _block_slice(test, folder / "test.csv", 3, 0, 20),
        )
    if fmt == "4line":
        base = shared / "assistments2009_akt_pid"
        return (
            _block_slice(base / "assist2009_pid_train1.csv", folder / "train.csv", 4, 0, 40),
            _block_slice(base / "assist2009_pid_valid1.csv", folder / "valid.csv", 4, 0, 15),
            _block_slice(base / "assist2009_pid_test1.csv", folder / "test.csv", 4, 0, 20),
        )
    source = shared / "assistments2009_pybkt_as_2020" / "as.csv"
    with source.open(encoding="latin-1", newline="") as handle:
        users = sorted({row["user_id"] for row in csv.DictReader(handle)})
    return (
        _csv_slice(source, folder / "train.csv", set(users[:120])),
        _csv_slice(source, folder / "valid.csv", set(users[120:160])),
        _csv_slice(source, folder / "test.csv", set(users[160:200])),
    )


@pytest.mark.parametrize(
    ("fmt", "model"), [("3line", "dkt_lstm"), ("4line", "akt"), ("csv", "sakt")]
)
def test_train_then_predict_every_answer(
    fmt: Format, model: str, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, valid, test = _slices(shared_data, tmp_path, fmt)
    saved = tmp_path / "model"
    size = ["--embedding", "16", "--hidden", "16", "--heads", "2", "--window", "50"]
    code = main(
        ["train", "--model", model, "--train", str(train), "--valid", str(valid),
         "--test", str(test), "--format", fmt, "--epochs", "2", "--patience", "1",
         "--no-register", "--save", str(saved), *size]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation AUC" in printed
    assert "best epoch" in printed

    out = tmp_path / "predictions.csv"
    code = main(
        ["predict", "--model-dir", str(saved), "--test", str(test), "--format", fmt,
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    learners = read_dataset_file(test, fmt)
    # One row per answer (every test skill was in the vocabulary built over all parts).
    assert len(rows) == sum(len(learner) for learner in learners)
    firsts = {(row["learner"], row["position"]) for row in rows if row["position"] == "0"}
    assert firsts == {(learner.learner_id, "0") for learner in learners if len(learner)}
    assert all(0.0 <= float(row["p"]) <= 1.0 for row in rows)
    # Positions past the window (50) are there too: the second window's first answer.
    long = next(learner for learner in learners if len(learner) > 50)
    assert any(r["learner"] == long.learner_id and r["position"] == "50" for r in rows)
    if fmt == "4line":
        assert all(row["item"] for row in rows)
        assert {row["scored"] for row in rows} == {"0", "1"}  # multi-skill copies marked
