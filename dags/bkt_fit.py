"""Fit per-skill BKT parameters on the lake and publish them to ``bkt_parameters``.

Daily, for the interval that just ended: EM on the attempts of the ``lookback_days``
before its end (:func:`ml.jobs.bkt_fit.fit_bkt_parameters`), then one upserting
transaction into PostgreSQL, where the learner-state processor reads them
(:func:`ml.jobs.bkt_fit.publish_bkt_parameters`). A re-run rewrites the interval's file
and upserts the same rows again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task


@dag(
    dag_id="bkt_fit",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    params={
        "lookback_days": Param(90, type="number", exclusiveMinimum=0),
        "restarts": Param(5, type="integer", minimum=1),
        "forgets": Param(False, type="boolean"),
        "min_answers": Param(20, type="integer", minimum=1),
        "seed": Param(0, type="integer"),
    },
    tags=["learnstream", "bkt"],
    doc_md=__doc__,
)
def bkt_fit() -> None:
    @task
    def fit(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.bkt_fit import BKTFitOptions, fit_bkt_parameters
        from ml.jobs.common import Interval, options_from_params

        options = options_from_params(BKTFitOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        fit_bkt_parameters(get_settings(), interval, options)

    @task
    def publish(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        run_id: str | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.bkt_fit import publish_bkt_parameters
        from ml.jobs.common import Interval

        interval = Interval.of(data_interval_start, data_interval_end)
        publish_bkt_parameters(get_settings(), interval, run_id or "")

    # publish reads the file fit wrote for the interval; no value passes between them.
    fit() >> publish()


bkt_fit()
