"""Artifact storage: path safety (`paths`), the store contract (`store`), and its two
implementations, local files (`local`) and Azure Blob (`azure`, imported only when used)."""

from common.artifacts.paths import (
    INVALID_PATH,
    ArtifactScope,
    artifact_scope,
    is_within,
    join_under,
    model_artifact_root,
    run_artifact_root,
    safe_relative_path,
)
from common.artifacts.store import (
    ArtifactStore,
    ArtifactTooLarge,
    FileInfo,
    PartRef,
    PutResult,
    UploadedPart,
    open_store,
    storage_key,
)

__all__ = [
    "INVALID_PATH",
    "ArtifactScope",
    "ArtifactStore",
    "ArtifactTooLarge",
    "FileInfo",
    "PartRef",
    "PutResult",
    "UploadedPart",
    "artifact_scope",
    "is_within",
    "join_under",
    "model_artifact_root",
    "open_store",
    "run_artifact_root",
    "safe_relative_path",
    "storage_key",
]
