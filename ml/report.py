"""``python -m ml report``: model comparison as a table and a figure, files and MLflow artifacts.

Input: result files of ``bench/ml_dkt.py`` (``bench/results/ml_dkt.json``: one run per
dataset, model and seed, with test AUC overall and by history length and a
calibration table), optionally per-answer prediction files of ``python -m ml predict``
(``LABEL=path.csv``) whose calibration is drawn too. Output in ``--out``:

* ``report.md``: AUC mean ± sd over seeds per dataset and model, BKT beside it, the
  number of scored answers, AUC by history length;
* ``report.png``: three panels (AUC per model per dataset with the seed spread as
  error bars; calibration curves; AUC by history length), drawn with matplotlib when
  it is installed (otherwise the figure is skipped and the table says so).

Both files are logged as artifacts of one run in the MLflow experiment ``kt-report``
unless ``--no-mlflow``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml.evaluate import HISTORY_GROUPS
from ml.metrics import calibration

REPORT_EXPERIMENT = "kt-report"


def load_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every run of the given bench result files, with the file's run size attached."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        payload = json.loads(path.read_text())
        for run in payload.get("runs", []):
            runs.append({**run, "max_learners": payload.get("max_learners")})
    return runs


def prediction_calibration(path: Path) -> list[dict[str, float]]:
    """Calibration table of a ``python -m ml predict`` file (scored answers only)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("scored", "1") == "1"]
    outcomes = np.array([float(row["outcome"]) for row in rows])
    return calibration(outcomes, np.array([float(row["p"]) for row in rows]))


def _groups(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    # Runs of different sizes (a subset, the full split) are never pooled.
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        size = run.get("max_learners") or "full"
        model = run["model"] if size == "full" else f"{run['model']} ({size} learners)"
        grouped.setdefault((run["dataset"], model), []).append(run)
    return grouped


def _spread(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else float("nan")


def table(runs: list[dict[str, Any]]) -> str:
    """The markdown table (one row per dataset and model)."""
    labels = [label for label, _, _ in HISTORY_GROUPS]
    lines = [
        "| dataset | model (run size) | seeds | scored answers | AUC mean ± sd | BKT AUC | "
        + " | ".join(f"AUC {label}" for label in labels)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(labels),
    ]
    for (dataset, model), group in _groups(runs).items():
        mean, sd = _spread([r["model_scores"]["auc"] for r in group])
        bkt, _ = _spread([r["bkt_scores"]["auc"] for r in group])
        by_history = [
            _spread([r["model_auc_by_history"][label] for r in group])[0] for label in labels
        ]
        lines.append(
            f"| {dataset} | {model} | {len(group)} | {group[0]['scored_answers']} | "
            f"{mean:.4f} ± {sd:.4f} | {bkt:.4f} | "
            + " | ".join(f"{value:.3f}" for value in by_history)
            + " |"
        )
    return "\n".join(lines) + "\n"


def figure(
    runs: list[dict[str, Any]], extra: dict[str, list[dict[str, float]]], target: Path
) -> bool:
    """Draw the three panels into ``target``; ``False`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    grouped = _groups(runs)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 5))
    names = [f"{d}\n{m}" for d, m in grouped]
    spreads = [_spread([r["model_scores"]["auc"] for r in g]) for g in grouped.values()]
    left.errorbar(
        range(len(names)),
        [m for m, _ in spreads],
        yerr=[0.0 if np.isnan(s) else s for _, s in spreads],
        fmt="o",
        capsize=4,
    )
    left.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    left.set_ylabel("test AUC (every answer), mean ± sd over seeds")
    curves = {f"{d} {m}": g[0].get("calibration") for (d, m), g in grouped.items()}
    for label, bins in {**curves, **extra}.items():
        if bins:
            middle.plot(
                [b["mean_p"] for b in bins], [b["observed"] for b in bins], "o-", label=label
            )
    middle.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    middle.set_xlabel("predicted P(correct)")
    middle.set_ylabel("observed rate")
    middle.legend(fontsize=6)
    labels = [label for label, _, _ in HISTORY_GROUPS]
    for (dataset, model), group in grouped.items():
        values = [_spread([r["model_auc_by_history"][k] for r in group])[0] for k in labels]
        right.plot(range(len(labels)), values, "o-", label=f"{dataset} {model}")
    right.set_xticks(range(len(labels)), [k.removeprefix("history_") for k in labels])
    right.set_xlabel("answers before (history length)")
    right.set_ylabel("test AUC")
    right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True


def write_report(
    runs: list[dict[str, Any]], out: Path, extra: dict[str, list[dict[str, float]]]
) -> list[Path]:
    """Write ``report.md`` (and ``report.png`` when matplotlib exists); returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "report.md"
    image = out / "report.png"
    drawn = figure(runs, extra, image)
    note = "" if drawn else "\n(figure skipped: matplotlib is not installed)\n"
    markdown.write_text("# Knowledge-tracing model comparison\n\n" + table(runs) + note)
    return [markdown, image] if drawn else [markdown]
