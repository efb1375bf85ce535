"""Retrain the DKT model from the lake and promote it when it beats the champion.

Daily, for the interval that just ended, on the lake's ``lookback_days`` before its
end: snapshot the partitions and row counts → train (resumable) → evaluate the saved
model on held-out learners next to BKT → score the champion on the same learners →
log the MLflow run with its data snapshot, register a version and give it
``champion`` (beats the champion by ``LEARNSTREAM_ML_PROMOTION_MIN_AUC_GAIN``) or
``challenger``. With fewer than ``min_rows`` attempts in the window the run is skipped.
See :mod:`ml.jobs.dkt_retrain`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

# The tunable settings default to null: "use RetrainOptions' default", which is the
# configuration `python -m ml tune --write` chose (ml/tuned.json). A run may set them.
TUNABLE = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "embedding_dim",
    "hidden_dim",
    "num_layers",
    "num_heads",
    "dropout",
)


def chosen(params: dict[str, Any] | None) -> dict[str, Any]:
    """The run's params without the tunable ones left null (RetrainOptions fills them)."""
    return {k: v for k, v in (params or {}).items() if not (k in TUNABLE and v is None)}


@dag(
    dag_id="dkt_retrain",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=15)},
    params={
        "lookback_days": Param(28, type="number", exclusiveMinimum=0),
        "min_rows": Param(1000, type="integer", minimum=1),
        "model_kind": Param("dkt_lstm", enum=["dkt_lstm", "sakt", "akt"]),
        "epochs": Param(10, type="integer", minimum=1),
        "patience": Param(3, type="integer", minimum=0),
        "batch_size": Param(None, type=["null", "integer"], minimum=1),
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0),
        "weight_decay": Param(None, type=["null", "number"], minimum=0),
        "window_length": Param(200, type="integer", minimum=2),
        "embedding_dim": Param(None, type=["null", "integer"], minimum=1),
        "hidden_dim": Param(None, type=["null", "integer"], minimum=1),
        "num_layers": Param(None, type=["null", "integer"], minimum=1),
        "num_heads": Param(None, type=["null", "integer"], minimum=1),
        "dropout": Param(None, type=["null", "number"], minimum=0, exclusiveMaximum=1),
        "test_fraction": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "validation_fraction": Param(0.1, type="number", minimum=0, exclusiveMaximum=1),
        "max_learners": Param(None, type=["null", "integer"]),
        "bkt_restarts": Param(3, type="integer", minimum=1),
        "seed": Param(0, type="integer"),
        "device": Param("cpu", type="string"),
    },
    tags=["learnstream", "ml"],
    doc_md=__doc__,
)
def dkt_retrain() -> None:
    """The five tasks in order (the DAG's documentation is the module docstring).

    Long because TaskFlow defines each task inside the DAG function; each is short.
    """

    @task
    def snapshot(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> int:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.dkt_retrain import RetrainOptions, snapshot_lake

        options = options_from_params(RetrainOptions, chosen(params))
        interval = Interval.of(data_interval_start, data_interval_end)
        return int(snapshot_lake(get_settings(), interval, options)["rows"])

    @task
    def train(
        lake_rows: int,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.dkt_retrain import RetrainOptions, train_candidate

        options = options_from_params(RetrainOptions, chosen(params))
        if lake_rows < options.min_rows:
            raise AirflowSkipException(
                f"{lake_rows} attempts in the window, fewer than {options.min_rows}"
            )
        interval = Interval.of(data_interval_start, data_interval_end)
        train_candidate(get_settings(), interval, options)

    @task
    def evaluate(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.dkt_retrain import RetrainOptions, evaluate_candidate

        options = options_from_params(RetrainOptions, chosen(params))
        interval = Interval.of(data_interval_start, data_interval_end)
        evaluate_candidate(get_settings(), interval, options)

    @task
    def compare(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.dkt_retrain import RetrainOptions, compare_with_champion

        options = options_from_params(RetrainOptions, chosen(params))
        interval = Interval.of(data_interval_start, data_interval_end)
        compare_with_champion(get_settings(), interval, options)

    @task
    def register(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.dkt_retrain import RetrainOptions, register_candidate

        options = options_from_params(RetrainOptions, chosen(params))
        interval = Interval.of(data_interval_start, data_interval_end)
        register_candidate(get_settings(), interval, options, run_id or "")

    # Each step reads what the one before wrote under the run's jobs folder; only the
    # window's row count passes as a value (train skips the run below min_rows).
    train(snapshot()) >> evaluate() >> compare() >> register()


dkt_retrain()
