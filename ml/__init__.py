"""Knowledge-tracing models (DKT with an LSTM, a SAKT-style Transformer), their
datasets (shared KT logs and the Parquet lake), training, evaluation next to BKT,
the MLflow registry and batched serving with a BKT fallback.

``python -m ml --help`` lists the commands (train, rollback, show, build-lake).
"""
