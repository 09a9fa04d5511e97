"""Where a model version may come from: MLflow's `source` rules for create-model-version.

Pure functions over URIs (`mlflow/server/handlers.py`: `_validate_source_run`,
`_validate_source_model`, `_validate_non_local_source_contains_relative_paths`); the caller looks
up the run or logged model a rule names and passes its artifact root in.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from common.errors import MlflowError

_MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
_ARTIFACT_ROUTE = ("api", "2.0", "mlflow-artifacts", "artifacts")


def invalid_source(source: str, id_name: str) -> MlflowError:
    return MlflowError.invalid(
        f"Invalid model version source: '{source}'. The {id_name} request parameter must identify the "
        "resource that contains the source.")


@dataclass(frozen=True)
class ModelsUri:
    """`models:/<name>/<version>`, `models:/<name>@<alias>` or `models:/<model id>`."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None


def parse_models_uri(source: str, id_name: str = "model_id") -> ModelsUri:
    path = urllib.parse.urlparse(source).path.strip("/")
    parts = path.split("/") if path else []
    if len(parts) == 1 and "@" in parts[0]:
        name, _, alias = parts[0].partition("@")
        if name and alias:
            return ModelsUri(name=name, alias=alias)
    elif len(parts) == 1 and _MODEL_ID_RE.match(parts[0]):
        return ModelsUri(model_id=parts[0])
    elif len(parts) == 2 and all(parts):
        return ModelsUri(name=parts[0], version=parts[1])
    raise invalid_source(source, id_name)


def is_local(source: str) -> bool:
    scheme = urllib.parse.urlparse(source).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and scheme.isalpha())  # C:\ paths


def _unquote_fully(value: str, unquote=urllib.parse.unquote) -> str:
    while (unquoted := unquote(value)) != value:
        value = unquoted
    return value


def check_no_relative_paths(source: str) -> None:
    message = (
        f"Invalid model version source: '{source}'. If supplying a source as an http, https, local file path, "
        "ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without relative path "
        "references present. Please provide an absolute path.")
    plain = _unquote_fully(source, urllib.parse.unquote_plus)
    path = re.sub(r"/+", "/", urllib.parse.urlparse(plain).path.rstrip("/"))
    if "\x00" in path or any(p == ".." for p in plain.split("/")):
        raise MlflowError.invalid(message)
    # MLflow compares the path with its resolved form: relative or non-normal paths differ.
    if path and (not path.startswith("/") or posixpath.normpath(path) != path):
        raise MlflowError.invalid(message)


def _parts(uri: str) -> tuple[str, str, tuple[str, ...]]:
    parsed = urllib.parse.urlsplit(uri)
    return (parsed.scheme.lower(), parsed.netloc.lower(),
            tuple(_unquote_fully(p) for p in parsed.path.split("/") if p))


def is_artifact_proxy_source(source: str) -> bool:
    scheme, _, parts = _parts(source)
    if scheme == "mlflow-artifacts":
        return True
    n = len(_ARTIFACT_ROUTE)
    return scheme in ("http", "https") and any(parts[i:i + n] == _ARTIFACT_ROUTE for i in range(len(parts) - n + 1))


def within_root(source: str, root: str) -> bool:
    s_scheme, s_host, s_parts = _parts(source)
    r_scheme, r_host, r_parts = _parts(root)
    return s_scheme == r_scheme and s_host == r_host and bool(r_parts) and s_parts[:len(r_parts)] == r_parts


def runs_uri_run_id(source: str) -> str:
    path = urllib.parse.urlparse(source).path.lstrip("/")
    return path.split("/", 1)[0]
