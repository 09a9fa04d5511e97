"""Migrate an MLflow tracking store (file, SQL or another server) into Genesis-Flow.

    python tools/migration/mlflow_to_genesis_flow.py --source-uri file:///old/mlruns \
        --target-uri https://your-domain.com --analyze-only

The same as `genesis-flow migrate`; the code is `genesis_flow/migrate/`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from genesis_flow.migrate.main import main

if __name__ == "__main__":
    sys.exit(main())
