"""What the server says about itself: `/version` and `/api/3.0/mlflow/server-info`."""

from __future__ import annotations

from typing import Any

# The MLflow server version whose REST API this backend speaks; clients compare it.
MLFLOW_VERSION = "3.17.2"


def server_info() -> dict[str, Any]:
    """Same keys as the reference server (3.17). Multipart uploads/downloads are off: the client
    then uses the plain artifact PUT/GET routes."""
    return {
        "store_type": "MongoStore",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "presigned_upload_run_id_supported": True,
        "presigned_upload_model_id_supported": True,
        "features_enabled": {"gateway": False},
    }
