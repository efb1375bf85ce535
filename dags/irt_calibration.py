"""Recalibrate IRT item parameters from the lake and publish them to ``irt_item_parameters``.

Daily, for the interval that just ended: Bock–Aitkin calibration of each tenant's
first answers in the ``lookback_days`` before its end
(:func:`ml.jobs.irt_calibration.calibrate_item_parameters`), then one upserting
transaction into PostgreSQL, where the learner-state processor reads them
(:func:`ml.jobs.irt_calibration.publish_item_parameters`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task


@dag(
    dag_id="irt_calibration",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    params={
        "lookback_days": Param(90, type="number", exclusiveMinimum=0),
        "model": Param("2PL", enum=["1PL", "2PL", "3PL"]),
        "min_item_responses": Param(20, type="integer", minimum=1),
        "min_learner_responses": Param(2, type="integer", minimum=1),
        "max_items": Param(2000, type="integer", minimum=1),
        "max_iter": Param(200, type="integer", minimum=1),
    },
    tags=["learnstream", "irt"],
    doc_md=__doc__,
)
def irt_calibration() -> None:
    @task
    def calibrate(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.irt_calibration import CalibrationOptions, calibrate_item_parameters

        options = options_from_params(CalibrationOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        calibrate_item_parameters(get_settings(), interval, options)

    @task
    def publish(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        run_id: str | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval
        from ml.jobs.irt_calibration import publish_item_parameters

        interval = Interval.of(data_interval_start, data_interval_end)
        publish_item_parameters(get_settings(), interval, run_id or "")

    # publish reads the file calibrate wrote for the interval; no value passes between them.
    calibrate() >> publish()


irt_calibration()
