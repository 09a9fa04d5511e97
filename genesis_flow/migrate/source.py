"""The MLflow being migrated from, read only through the installed `mlflow`'s own store classes.

`file:///…/mlruns` (or a plain directory) is MLflow's FileStore, `sqlite:///…`, `postgresql://…`,
`mysql://…` and `mssql://…` its SqlAlchemyStore, `http(s)://…` its RestStore (another tracking
server). The same three kinds serve the model registry. Artifacts are read through MLflow's
artifact repositories; `mlflow-artifacts:/` locations of a database read directly are resolved
against `artifacts_from` (the server's URL, or the directory its `--artifacts-destination` names).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from genesis_flow.migrate.points import Point, from_mlflow

PAGE = 1000
HISTORY_PAGE = 25_000
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"


class SourceError(Exception):
    """The source cannot be opened or read as asked."""


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative to the run's (or model's) artifact root, '/'-separated
    size: int


def _kind(uri: str) -> str:
    scheme = urllib.parse.urlparse(uri).scheme.split("+", 1)[0]
    if scheme in ("", "file"):
        return "file"
    if scheme in SQL_SCHEMES:
        return "sql"
    if scheme in ("http", "https"):
        return "rest"
    raise SourceError(f"unsupported source URI {uri!r}: use file:///…/mlruns, sqlite:///…, "
                      "postgresql://…, mysql://… or http(s)://…")


def _local_path(uri: str) -> str:
    parsed = urllib.parse.urlparse(uri)
    return urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri


class Source:
    def __init__(self, uri: str, artifacts_from: str | None = None):
        self.uri = uri
        self.kind = _kind(uri)
        self.artifacts_from = artifacts_from
        if self.kind == "file":
            from mlflow.store.model_registry.file_store import (
                FileStore as RegistryFileStore,
            )
            from mlflow.store.tracking.file_store import FileStore

            root = _local_path(uri)
            if not os.path.isdir(root):
                raise SourceError(f"no MLflow file store at {root}")
            with file_store_allowed():
                self.store: Any = FileStore(root)
                self.registry: Any = RegistryFileStore(root)
        elif self.kind == "sql":
            from mlflow.store.model_registry.sqlalchemy_store import (
                SqlAlchemyStore as RegistrySqlStore,
            )
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            root = artifacts_from if artifacts_from and "://" not in artifacts_from else "./mlruns"
            self.store = SqlAlchemyStore(uri, root)
            self.registry = RegistrySqlStore(uri)
        else:
            from mlflow.store.model_registry.rest_store import (
                RestStore as RegistryRestStore,
            )
            from mlflow.store.tracking.rest_store import RestStore

            creds = partial(_host_creds, uri)
            self.store = RestStore(creds)
            self.registry = RegistryRestStore(creds)

    # --- tracking entities ---------------------------------------------------------------------

    def experiments(self) -> list[Any]:
        from mlflow.entities import ViewType

        out: list[Any] = []
        token = None
        while True:
            page = self.store.search_experiments(view_type=ViewType.ALL, max_results=PAGE, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return sorted(out, key=lambda e: (len(e.experiment_id), e.experiment_id))

    def runs(self, experiment_id: str) -> Iterator[Any]:
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.store.search_runs([experiment_id], None, ViewType.ALL, max_results=PAGE,
                                          order_by=["attributes.start_time ASC"], page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def history(self, run_id: str, key: str) -> list[Point]:
        if self.kind != "rest":
            return [from_mlflow(m) for m in self.store.get_metric_history(run_id, key)]
        points: list[Point] = []
        token = None
        while True:
            page = self.store.get_metric_history(run_id, key, max_results=HISTORY_PAGE, page_token=token)
            points.extend(from_mlflow(m) for m in page)
            token = getattr(page, "token", None)
            if not token:
                return points

    def logged_models(self, experiment_id: str) -> list[Any]:
        out: list[Any] = []
        token = None
        try:
            while True:
                page = self.store.search_logged_models([experiment_id], max_results=100, page_token=token)
                out.extend(page)
                token = page.token
                if not token:
                    return out
        except NotImplementedError:  # a store without MLflow 3 logged models: none to copy
            return []

    # --- registry ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _registry_context(self) -> Iterator[None]:
        """MLflow's registry stores look logged models up through the *global* tracking URI (which
        would otherwise default to ./mlflow.db): point it at the source while they read."""
        from mlflow.tracking._tracking_service import utils as tracking_utils

        # exactly as it was, unset included (the setter also exports MLFLOW_TRACKING_URI)
        previous, previous_env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
        tracking_utils.set_tracking_uri(self.uri)
        try:
            with file_store_allowed():
                yield
        finally:
            tracking_utils._tracking_uri = previous
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env

    def registered_models(self) -> list[Any]:
        out: list[Any] = []
        token = None
        with self._registry_context():
            while True:
                page = self.registry.search_registered_models(max_results=PAGE, page_token=token)
                out.extend(page)
                token = page.token
                if not token:
                    return out

    def model_versions(self, name: str) -> list[Any]:
        escaped = name.replace("'", "\\'")
        out: list[Any] = []
        token = None
        with self._registry_context():
            while True:
                page = self.registry.search_model_versions(f"name = '{escaped}'", max_results=PAGE,
                                                           page_token=token)
                out.extend(page)
                token = page.token
                if not token:
                    return sorted(out, key=lambda mv: int(mv.version))

    # --- artifacts -----------------------------------------------------------------------------

    def _repository(self, artifact_uri: str) -> Any:
        from mlflow.store.artifact.artifact_repository_registry import (
            get_artifact_repository,
        )

        tracking_uri = self.uri if self.kind == "rest" else None
        if artifact_uri.startswith("mlflow-artifacts:"):
            if self.kind != "rest":
                if not self.artifacts_from:
                    raise SourceError(f"{artifact_uri} is served by an MLflow server: pass --source-artifacts "
                                      "(its URL, or the directory of its --artifacts-destination)")
                if "://" in self.artifacts_from:
                    tracking_uri = self.artifacts_from
                else:
                    rel = urllib.parse.urlparse(artifact_uri).path.lstrip("/")
                    artifact_uri = Path(self.artifacts_from, rel).resolve().as_uri()
        elif self.kind == "file" and "://" not in artifact_uri and not artifact_uri.startswith("file:"):
            artifact_uri = Path(artifact_uri).resolve().as_uri()
        return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)

    def artifact_files(self, artifact_uri: str) -> list[ArtifactFile]:
        repo = self._repository(artifact_uri)
        files: list[ArtifactFile] = []
        stack: list[str | None] = [None]
        while stack:
            path = stack.pop()
            try:
                listing = repo.list_artifacts(path)
            except (FileNotFoundError, NotADirectoryError):
                listing = []
            for info in listing:
                if info.is_dir:
                    stack.append(info.path)
                else:
                    files.append(ArtifactFile(info.path, int(info.file_size or 0)))
        return sorted(files, key=lambda f: f.path)

    @contextlib.contextmanager
    def artifact_file(self, artifact_uri: str, path: str) -> Iterator[Path]:
        """A local file with the artifact's bytes: the file itself for a local store, else a
        download into a temporary directory that is removed afterwards."""
        repo = self._repository(artifact_uri)
        local_root = getattr(repo, "artifact_dir", None)
        if local_root is not None and type(repo).__name__ == "LocalArtifactRepository":
            yield Path(local_root, path)
            return
        with tempfile.TemporaryDirectory(prefix="gf-migrate-") as tmp:
            yield Path(repo.download_artifacts(path, dst_path=tmp))


@contextlib.contextmanager
def file_store_allowed() -> Iterator[None]:
    """MLflow 3.x builds its file store only when allowed: reading one out is the point here."""
    previous = os.environ.get(ALLOW_FILE_STORE)
    os.environ[ALLOW_FILE_STORE] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ALLOW_FILE_STORE, None)
        else:
            os.environ[ALLOW_FILE_STORE] = previous


def _host_creds(uri: str) -> Any:
    from mlflow.utils.credentials import get_default_host_creds

    return get_default_host_creds(uri)
