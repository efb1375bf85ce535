"""Lake upkeep: purge erased learners, compact small Parquet files, check quality, report.

Daily, for the interval that just ended: first re-check the whole lake against every
privacy tombstone and rewrite the files still holding an erased learner; then merge
the small files of the settled days (the interval moved back by
``compaction_delay_days``), check the interval's own days (schema, nulls, duplicate
event ids, late events) and write
``<data_dir>/reports/lake_quality/interval_end=.../``. See
:mod:`ml.jobs.lake_maintenance` for the rules. Schema or missing-value errors fail the
check task (after writing the findings) unless ``fail_on_errors`` is false.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task


@dag(
    dag_id="lake_maintenance",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    params={
        "compaction_delay_days": Param(1, type="integer", minimum=0),
        "small_file_bytes": Param(32 * 1024 * 1024, type="integer", minimum=1),
        "max_merged_bytes": Param(256 * 1024 * 1024, type="integer", minimum=1),
        "late_after_s": Param(24 * 3600, type="integer", minimum=0),
        "fail_on_errors": Param(True, type="boolean"),
    },
    tags=["learnstream", "lake"],
    doc_md=__doc__,
)
def lake_maintenance() -> None:
    @task
    def purge_erased() -> None:
        from learnstream.settings import get_settings
        from ml.jobs import lake_maintenance

        lake_maintenance.purge_erased(get_settings())

    @task
    def compact(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval, options_from_params
        from ml.jobs.lake_maintenance import MaintenanceOptions, compact_partitions

        options = options_from_params(MaintenanceOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        return compact_partitions(get_settings(), interval, options)

    @task
    def check_quality(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from learnstream.settings import get_settings
        from ml.jobs import lake_maintenance
        from ml.jobs.common import Interval, options_from_params

        options = options_from_params(lake_maintenance.MaintenanceOptions, params or {})
        interval = Interval.of(data_interval_start, data_interval_end)
        try:
            return lake_maintenance.check_quality(get_settings(), interval, options)
        except lake_maintenance.DataQualityError as error:
            # Bad files do not heal by waiting: fail now instead of retrying.
            raise AirflowFailException(str(error)) from error

    @task
    def report(
        compaction: dict[str, Any],
        quality: dict[str, Any],
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
    ) -> None:
        from learnstream.settings import get_settings
        from ml.jobs.common import Interval
        from ml.jobs.lake_maintenance import write_report

        interval = Interval.of(data_interval_start, data_interval_end)
        write_report(get_settings(), interval, compaction, quality)

    # Compaction runs after the purge, and the checks after compaction: with no delay
    # they read the folders it rewrote. Only report reads the others' results.
    compacted = compact()
    quality = check_quality()
    purge_erased() >> compacted >> quality
    report(compacted, quality)


lake_maintenance()
