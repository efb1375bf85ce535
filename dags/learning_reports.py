"""Dashboard tables: retention and churn cohorts, learning effectiveness, content performance.

Daily, for the interval that just ended, three independent tasks write Parquet tables
under ``<data_dir>/reports/<table>/interval_end=.../`` (see
:mod:`ml.jobs.learning_reports` for every table and its columns).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task


@dag(
    dag_id="learning_reports",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    params={
        "cohort_days": Param(56, type="integer", minimum=1),
        "churn_after_days": Param(14, type="integer", minimum=1),
        "effectiveness_days": Param(7, type="integer", minimum=1),
        "max_gap_s": Param(300.0, type="number", minimum=0),
        "drift_days": Param(28, type="integer", minimum=1),
        "drift_b": Param(0.5, type="number", minimum=0),
        "drift_log_a": Param(0.4, type="number", minimum=0),
        "min_item_responses": Param(20, type="integer", minimum=1),
        "min_attempts": Param(10, type="integer", minimum=1),
    },
    tags=["learnstream", "reports"],
    doc_md=__doc__,
)
def learning_reports() -> None:
    @task
    def cohorts(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.learning_reports import ReportOptions, write_cohort_reports

        options = options_from_params(ReportOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        write_cohort_reports(get_settings(), interval, options)

    @task
    def effectiveness(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.learning_reports import ReportOptions, write_effectiveness_report

        options = options_from_params(ReportOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        write_effectiveness_report(get_settings(), interval, options)

    @task
    def content_performance(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.learning_reports import ReportOptions, write_content_reports

        options = options_from_params(ReportOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        write_content_reports(get_settings(), interval, options)

    cohorts()
    effectiveness()
    content_performance()


learning_reports()
