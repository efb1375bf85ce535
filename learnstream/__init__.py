"""Learnstream's shared kernel: settings, Kafka helpers, the database layer, logging.

Every deployable (ingest, processors, api, ml, dags) imports these once instead
of building its own clients.
"""
