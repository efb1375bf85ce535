"""DAG tests need Airflow, which lives in ``.venv-airflow`` only (see the README).

``make test`` runs this folder with ``.venv-airflow/bin/python -m pytest``; the main
environment's run skips collecting it (it has no Airflow to import).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["test_*.py"]
