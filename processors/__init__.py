"""Stream processors: Faust workers that read a topic, call scheduler/ or ml/, write
PostgreSQL views and emit derived events, with exactly-once effect (processors.base).

Run one with ``python -m processors <name>``.
"""
