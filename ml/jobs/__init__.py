"""Batch jobs the Airflow DAGs (``dags/``) run: one public function per DAG task.

Each job takes the settings and the run's data interval (:class:`ml.jobs.common.Interval`,
UTC, end exclusive), reads the lake, calls ``ml/`` or ``scheduler/`` for the science,
and writes the output partition of that interval (files replaced atomically, database
rows upserted), so running a job again for the same interval overwrites its own output.
No job reads the clock. Jobs return small JSON-ready dicts (Airflow passes them as XCom).
"""
