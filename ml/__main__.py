"""``python -m ml``: train, predict, roll back, show the registry, build a demo lake.

Examples::

    python -m ml train --model akt --train tr.csv --valid va.csv --test te.csv \
        --format 4line --save out/model --no-register
    python -m ml predict --model-dir out/model --test te.csv --format 4line --out p.csv
    python -m ml tune --model dkt_lstm --dataset assistments2009_dkvmn --trials 20 --write
    python -m ml report --results bench/results/ml_dkt.json --out report/
    python -m ml train --model dkt_lstm --dataset assistments2009_dkvmn --epochs 10
    python -m ml rollback --name dkt
    python -m ml show --name dkt
    python -m ml shadow-report
    python -m ml build-lake --dataset assistments2009_dkvmn --tenant demo --max-learners 200
    python -m ml train --model sakt --dataset lake --lake-start 2024-01-01 --tenant demo
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import torch

from learnstream import lake
from learnstream.logging import configure_logging
from learnstream.settings import Settings, get_settings
from ml.datasets import build_lake_from_dataset
from ml.exceptions import MLError
from ml.models import MODELS, ModelConfig
from ml.pipeline import FILES_DATASET, LAKE_DATASET, DataChoice, TrainingOutcome, run_training
from ml.predict import predict_answers, write_predictions
from ml.registry import HISTORY_TAG, ModelRegistry, load_model
from ml.sources import (
    BENCHMARKS,
    apply_skill_map,
    raw_benchmark_sequences,
    read_dataset_file,
    read_skill_map,
)
from ml.train import EpochLog, TrainConfig
from scheduler.datasets import FORMATS


def _add_tune_and_report(commands: Any) -> None:
    search = commands.add_parser("tune", help="Optuna search on validation AUC, tracked in MLflow")
    search.add_argument("--model", choices=sorted(MODELS), default="dkt_lstm")
    data = search.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", choices=sorted(BENCHMARKS))
    data.add_argument("--train", type=Path, action="append")
    search.add_argument("--valid", type=Path, action="append")
    search.add_argument("--test", type=Path, action="append", help="only for the vocabulary")
    search.add_argument("--format", choices=FORMATS, default="3line")
    search.add_argument("--skill-map", type=Path, default=None)
    search.add_argument("--trials", type=int, default=20)
    search.add_argument("--epochs", type=int, default=10, help="most epochs per trial")
    search.add_argument("--max-learners", type=int, default=None)
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--write", action="store_true", help="save the best to ml/tuned.json")
    search.add_argument("--threads", type=int, default=1)
    search.add_argument("--device", default="cpu")

    show_report = commands.add_parser("report", help="comparison table and figure (+ MLflow)")
    show_report.add_argument("--results", type=Path, action="append", required=True)
    show_report.add_argument("--predictions", action="append", default=[], help="LABEL=file.csv")
    show_report.add_argument("--out", type=Path, required=True)
    show_report.add_argument("--no-mlflow", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("train", help="train, evaluate next to BKT, log and register")
    run.add_argument("--model", choices=sorted(MODELS), default="dkt_lstm")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=[*sorted(BENCHMARKS), LAKE_DATASET])
    source.add_argument("--train", type=Path, action="append", help="train file (repeatable)")
    run.add_argument("--test", type=Path, action="append", help="test file (with --train)")
    run.add_argument("--valid", type=Path, action="append", help="validation file (optional)")
    run.add_argument("--format", choices=FORMATS, default="3line", help="format of the files")
    run.add_argument("--skill-map", type=Path, default=None, help="csv: raw skill id,skill id")
    run.add_argument("--patience", type=int, default=3, help="early stop (0 = off)")
    run.add_argument("--save", type=Path, default=None, help="write the model folder here")
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--learning-rate", type=float, default=1e-3)
    run.add_argument("--window", type=int, default=200, help="answers per window")
    run.add_argument("--embedding", type=int, default=100)
    run.add_argument("--hidden", type=int, default=100)
    run.add_argument("--layers", type=int, default=1)
    run.add_argument("--heads", type=int, default=5)
    run.add_argument("--dropout", type=float, default=0.2)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--validation-fraction", type=float, default=0.1)
    run.add_argument("--max-learners", type=int, default=None, help="quick runs on a slice")
    run.add_argument("--lake-start", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    run.add_argument("--lake-end", type=date.fromisoformat, default=None, help="inclusive")
    run.add_argument("--tenant", action="append", default=None, help="lake tenant (repeatable)")
    run.add_argument("--no-register", action="store_true", help="skip MLflow logging")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")

    _add_tune_and_report(commands)

    guess = commands.add_parser("predict", help="one row per answer of a file, as csv")
    model_source = guess.add_mutually_exclusive_group(required=True)
    model_source.add_argument("--model-dir", type=Path, help="a folder written by train --save")
    model_source.add_argument("--registered", help="NAME or NAME@alias (default alias champion)")
    guess.add_argument("--test", type=Path, action="append", required=True)
    guess.add_argument("--format", choices=FORMATS, default="3line")
    guess.add_argument("--skill-map", type=Path, default=None)
    guess.add_argument("--out", type=Path, required=True, help="csv to write")
    guess.add_argument("--threads", type=int, default=1)
    guess.add_argument("--device", default="cpu")

    back = commands.add_parser("rollback", help="give champion back to the previous champion")
    back.add_argument("--name", default=None, help="registered model (default: settings)")

    show = commands.add_parser("show", help="versions, AUCs and aliases of a registered model")
    show.add_argument("--name", default=None)

    commands.add_parser(
        "shadow-report", help="champion vs challenger scored on live attempts, per subgroup"
    )

    build = commands.add_parser("build-lake", help="write a shared dataset into the lake")
    build.add_argument("--dataset", choices=sorted(BENCHMARKS), required=True)
    build.add_argument("--tenant", default="demo")
    build.add_argument("--start", default="2024-01-01T00:00:00+00:00", help="ISO time, UTC")
    build.add_argument("--max-learners", type=int, default=None)
    return parser


def _print_epoch(entry: EpochLog) -> None:
    print(
        f"epoch {entry.epoch:3d}  loss {entry.train_loss:.4f}  train AUC {entry.train_auc:.4f}  "
        f"validation AUC {entry.validation_auc:.4f}  validation loss {entry.validation_loss:.4f}  "
        f"{entry.seconds:.1f} s",
        flush=True,
    )


def _data_choice(args: argparse.Namespace) -> DataChoice:
    if args.train:
        if not args.test:
            raise MLError("--train needs --test")
        return DataChoice(
            FILES_DATASET,
            max_learners=args.max_learners,
            train_files=tuple(args.train),
            valid_files=tuple(args.valid or ()),
            test_files=tuple(args.test),
            file_format=args.format,
            skill_map=args.skill_map,
        )
    return DataChoice(
        args.dataset,
        lake_start=args.lake_start,
        lake_end=args.lake_end,
        lake_tenants=tuple(args.tenant) if args.tenant else None,
        max_learners=args.max_learners,
    )


def _predict(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if args.model_dir is not None:
        loaded = load_model(args.model_dir, device)
    else:
        name, _, alias = args.registered.partition("@")
        registry = ModelRegistry(get_settings())
        version = registry.version_by_alias(name, alias or "champion")
        if version is None:
            raise MLError(f"no {alias or 'champion'} version of {name!r}")
        loaded = registry.load_version(name, version.version, device)
    raw = [seq for path in args.test for seq in read_dataset_file(path, args.format)]
    if args.skill_map is not None:
        raw = apply_skill_map(raw, read_skill_map(args.skill_map))
    rows = predict_answers(loaded, raw, device=device)
    write_predictions(rows, args.out)
    answers = sum(len(s) for s in raw)
    print(
        f"wrote {len(rows)} predictions for {answers} answers of {len(raw)} learners to {args.out}"
    )
    return 0


def _tune(args: argparse.Namespace) -> int:
    from ml import tune as tuning
    from ml import tuned

    torch.set_num_threads(args.threads)
    args.lake_start = args.lake_end = args.tenant = None
    if args.train and not args.test:
        raise MLError("--train needs --test (its skills join the vocabulary; it is not read)")
    result = tuning.tune(
        get_settings(),
        _data_choice(args),
        args.model,
        trials=args.trials,
        epochs=args.epochs,
        device=torch.device(args.device),
        seed=args.seed,
        on_trial=lambda t: print(f"trial {t.number:3d} {t.state.name:9s} {t.value} {t.params}"),
    )
    best = result.best
    print(
        f"best: validation AUC {best.provenance['best_validation_auc']:.4f} {best.model} "
        f"{best.train}; every trial in MLflow experiment {result.experiment}"
    )
    if args.write:
        tuned.save_tuned(args.model, best)
        print(f"wrote {tuned.TUNED_FILE}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ml.report import REPORT_EXPERIMENT, load_runs, prediction_calibration, write_report

    extra = {}
    for entry in args.predictions:
        label, _, path = entry.partition("=")
        extra[label] = prediction_calibration(Path(path))
    files = write_report(load_runs(args.results), args.out, extra)
    print("wrote " + ", ".join(str(f) for f in files))
    if not args.no_mlflow:
        registry = ModelRegistry(get_settings())
        run = registry.client.create_run(registry.experiment_id(REPORT_EXPERIMENT))
        for path in files:
            registry.client.log_artifact(run.info.run_id, str(path))
        registry.client.set_terminated(run.info.run_id)
        print(f"logged to MLflow run {run.info.run_id} ({REPORT_EXPERIMENT})")
    return 0


def _print_training_outcome(outcome: TrainingOutcome, settings: Settings) -> None:
    """The test scores of the model next to BKT, per history group, and the registry decision."""
    print(
        f"best epoch {outcome.best_epoch}; test answers scored {outcome.model_report.overall.count}"
    )
    print(f"{'':10s} {'AUC':>7s} {'ACC':>7s} {'RMSE':>7s} {'logloss':>8s}")
    for label, scores in (
        ("model", outcome.model_report.overall),
        ("bkt", outcome.bkt_report.overall),
    ):
        print(
            f"{label:10s} {scores.auc:7.4f} {scores.accuracy:7.4f} {scores.rmse:7.4f} "
            f"{scores.log_loss:8.4f}"
        )
    for group, scores in outcome.model_report.by_history.items():
        bkt_scores = outcome.bkt_report.by_history[group]
        print(
            f"  {group:16s} n={scores.count:7d} model AUC {scores.auc:.4f}  "
            f"bkt AUC {bkt_scores.auc:.4f}"
        )
    if outcome.decision is not None:
        d = outcome.decision
        print(f"registered {settings.ml_model_name} version {d.version} as {d.alias}: {d.reason}")


def _train(args: argparse.Namespace, settings: Settings) -> int:
    torch.set_num_threads(args.threads)
    outcome = run_training(
        settings,
        _data_choice(args),
        ModelConfig(
            kind=args.model,
            num_skills=1,  # set from the data
            embedding_dim=args.embedding,
            hidden_dim=args.hidden,
            num_layers=args.layers,
            num_heads=args.heads,
            dropout=args.dropout,
        ),
        TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            window_length=args.window,
            seed=args.seed,
            patience=args.patience,
        ),
        device=torch.device(args.device),
        validation_fraction=args.validation_fraction,
        register=not args.no_register,
        on_epoch=_print_epoch,
        save_to=args.save,
    )
    _print_training_outcome(outcome, settings)
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name or settings.ml_model_name
    restored = ModelRegistry(settings).rollback(name)
    print(f"{name}: champion is now version {restored}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name or settings.ml_model_name
    registry = ModelRegistry(settings)
    if registry.version_by_alias(name, "champion") is None and not list(
        registry.client.search_registered_models(f"name='{name}'")
    ):
        print(f"no registered model {name!r} in {registry.uri}")
        return 1
    model = registry.client.get_registered_model(name)
    aliases = {v: k for k, v in model.aliases.items()}
    for version in registry.client.search_model_versions(f"name='{name}'"):
        print(
            f"version {version.version:>3}  AUC {version.tags.get('eval_auc', '?'):>8.8}  "
            f"set {version.tags.get('eval_fingerprint', '?')}  "
            f"{aliases.get(version.version, '')}"
        )
    print(f"earlier champions: {model.tags.get(HISTORY_TAG, '') or 'none'}")
    return 0


def _shadow_report(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ml.prediction_state import shadow_report

    print(asyncio.run(shadow_report(settings)))
    return 0


def _build_lake(args: argparse.Namespace, settings: Settings) -> int:
    raw = raw_benchmark_sequences(args.dataset, settings.dataset_dir)
    if args.max_learners is not None:
        raw = raw[: args.max_learners]
    written = build_lake_from_dataset(
        raw,
        lake.default_root(settings),
        tenant_id=args.tenant,
        topic=settings.topic("attempts"),
        start=datetime.fromisoformat(args.start).astimezone(UTC),
    )
    print(f"wrote {written} attempts of {len(raw)} learners to {lake.default_root(settings)}")
    return 0


def _run_predict(args: argparse.Namespace, settings: Settings) -> int:
    torch.set_num_threads(args.threads)
    return _predict(args)


# Subcommand -> handler(args, settings) returning the exit status.
_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "train": _train,
    "tune": lambda args, _settings: _tune(args),
    "report": lambda args, _settings: _report(args),
    "predict": _run_predict,
    "rollback": _rollback,
    "show": _show,
    "shadow-report": _shadow_report,
    "build-lake": _build_lake,
}


def main(argv: list[str]) -> int:
    """Run one subcommand; 0 on success, 1 on an :class:`MLError` (logged and printed)."""
    args = _parser().parse_args(argv)
    settings = get_settings()
    configure_logging("WARNING", json_lines=False)
    try:
        return _COMMANDS[args.command](args, settings)
    except MLError as error:
        logging.getLogger("ml").error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
