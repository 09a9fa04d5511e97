"""`genesis-flow migrate` (also `tools/migration/mlflow_to_genesis_flow.py`): move an MLflow
tracking server's content into Genesis-Flow, losing nothing. See `main.py` for the flags and the
README, "Migrating from MLflow", for how it works and what it guarantees."""
