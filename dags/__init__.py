"""Airflow DAGs: thin TaskFlow files; every task calls one function of ``ml.jobs``.

They run in their own environment, ``.venv-airflow`` (``make setup-airflow``); see the
README's "Airflow" section. Nothing here does work when a file is parsed.
"""
