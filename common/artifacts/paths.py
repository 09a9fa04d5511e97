"""Artifact path safety and the layout of the artifact tree. Pure functions, no I/O.

A client names an artifact by a relative path (`PUT /api/2.0/mlflow-artifacts/artifacts/<path>`,
`GET artifacts?path=<dir>`). `safe_relative_path` is the one gate every such path goes through:
it starts from MLflow's `validate_path_is_safe` (mlflow/utils/uri.py) and is stricter where
MLflow relies on the local OS or is silent:

* percent-escapes left after aiohttp's one decode are decoded again, like MLflow's `_decode`,
  until none remain (at most 10 rounds); an escape that stands for `.`, `/`, `\\`, `%` or a
  control character is refused outright (`%2e%2e`, `..%2f`, `%252e`, `%5c` ...): nobody names a
  file that way, attackers do. Other escapes decode (`a%41` -> `aA`, as MLflow stores it).
* `#` anywhere (MLflow), a backslash anywhere (MLflow only on Windows), a leading `/`,
  a `..` segment, a drive or URI scheme in the first segment (`C:`, `C:x`, `file:`,
  `mlflow-artifacts:`) are refused.
* control characters (C0, DEL, C1) and lone surrogates are refused; MLflow escapes control
  characters to `%xx` and keeps going, which only hides them.
* a segment whose NFKC form is `.` or `..` or holds a slash (`\u2025`, `\uff0e\uff0e`, `\uff0f`)
  is refused: no store here normalises Unicode, but a tool downstream might, and such names
  have no honest use. Other Unicode is kept byte for byte (no NFC/NFD folding).
* empty and `.` segments are dropped (`a//b/./c/` -> `a/b/c`), so both stores agree on one key
  (MLflow's local store normalises the same way; its Azure store would keep `a//b`).
* `~` is an ordinary name: nothing here expands it (MLflow does not either).
* a segment longer than 255 UTF-8 bytes (file-system NAME_MAX) or a path longer than
  1024 characters (Azure's blob-name limit) is refused, as a 400 rather than an OS error.

Every refusal is MLflow's own answer: 400 INVALID_PARAMETER_VALUE "Invalid path".
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
import urllib.parse

import msgspec

from common.errors import MlflowError
from common.validation import EXPERIMENT_ID_RE, RUN_ID_RE

INVALID_PATH = "Invalid path"  # MLflow's message, word for word

MAX_PATH_CHARS = 1024
MAX_SEGMENT_BYTES = 255
_MAX_DECODE_ROUNDS = 10

MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
ARTIFACTS_DIR = "artifacts"
MODELS_DIR = "models"

_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# Bytes an escape may not stand for: they change how the path splits or would decode again.
_REFUSED_ESCAPED = frozenset(b"./\\%") | frozenset(range(0x20)) | {0x7F}
# `C:`, `C:x`, `file:`, `mlflow-artifacts:`, `s3:` ... at the start of the path.
_SCHEME_OR_DRIVE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def _invalid() -> MlflowError:
    return MlflowError.invalid(INVALID_PATH)


def _decode(path: str) -> str:
    """Decode leftover percent-escapes until none remain; refuse the dangerous ones."""
    for _ in range(_MAX_DECODE_ROUNDS):
        escapes = _ESCAPE_RE.findall(path)
        if not escapes:
            return path
        if any(int(h, 16) in _REFUSED_ESCAPED for h in escapes):
            raise _invalid()
        try:
            path = urllib.parse.unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise _invalid() from None
    raise _invalid()


def _bad_char(ch: str) -> bool:
    # U+FFFD: a byte sequence that was not UTF-8 (e.g. an overlong "%c0%ae" dot), never a real name
    return ch in "#\\\ufffd" or unicodedata.category(ch) in ("Cc", "Cs")


def _check_segment(segment: str) -> None:
    if segment == "..":
        raise _invalid()
    folded = unicodedata.normalize("NFKC", segment)
    if folded in (".", "..") or "/" in folded or "\\" in folded:
        raise _invalid()
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise _invalid()


def safe_relative_path(raw: str) -> str:
    """The normalised POSIX relative form of a client-supplied artifact path, or a 400.

    `""` (also `"."`, `"./"`) is the root of the artifact tree; callers that need a file decide
    whether the root is acceptable. The result is stable: applying this again returns it unchanged.
    """
    if not isinstance(raw, str):
        raise _invalid()
    path = _decode(raw)
    if any(_bad_char(ch) for ch in path):
        raise _invalid()
    if path.startswith("/") or _SCHEME_OR_DRIVE_RE.match(path):
        raise _invalid()
    segments = [s for s in path.split("/") if s not in ("", ".")]
    for segment in segments:
        _check_segment(segment)
    rel = "/".join(segments)
    if len(rel) > MAX_PATH_CHARS:
        raise _invalid()
    return rel


def is_within(root: str, path: str) -> bool:
    """True when `path` is `root` or below it, comparing normalised POSIX strings.

    Both are absolute or both relative; a relative root of `""`/`"."` holds every relative path
    that does not climb out. Resolving symlinks is the caller's business (the local store does).
    """
    root_n = posixpath.normpath(root) if root else "."
    path_n = posixpath.normpath(path) if path else "."
    if root_n.startswith("/") != path_n.startswith("/"):
        return False
    if root_n == ".":
        return path_n != ".." and not path_n.startswith("../")
    if path_n == root_n:
        return True
    return path_n.startswith(root_n if root_n.endswith("/") else root_n + "/")


def join_under(root_prefix: str, rel: str) -> str:
    """`root_prefix/rel` for a client path `rel`, checked again to stay under `root_prefix`."""
    rel = safe_relative_path(rel)
    root = root_prefix.rstrip("/") if root_prefix not in ("", "/") else root_prefix
    if not rel:
        joined = root
    elif not root:
        joined = rel
    else:
        joined = posixpath.join(root, rel)
    if not is_within(root, joined):
        raise _invalid()
    return joined


# --- the artifact tree's layout ----------------------------------------------------------------


def run_artifact_root(experiment_id: str, run_id: str) -> str:
    """Where a run's artifacts live, relative to the store: its `artifact_uri` minus the scheme."""
    return f"{experiment_id}/{run_id}/{ARTIFACTS_DIR}"


def model_artifact_root(experiment_id: str, model_id: str) -> str:
    """Where a logged model's artifacts live, relative to the store."""
    return f"{experiment_id}/{MODELS_DIR}/{model_id}/{ARTIFACTS_DIR}"


class ArtifactScope(msgspec.Struct, frozen=True, kw_only=True):
    """What a proxied path belongs to: a run's or a logged model's artifact root, or neither.

    `path` is the part inside that root (`""` for the root itself); for a path of neither shape
    it is the whole path and every id is None.
    """

    path: str
    experiment_id: str | None = None
    run_id: str | None = None
    model_id: str | None = None

    @property
    def root(self) -> str | None:
        if self.experiment_id is None:
            return None
        if self.model_id is not None:
            return model_artifact_root(self.experiment_id, self.model_id)
        assert self.run_id is not None
        return run_artifact_root(self.experiment_id, self.run_id)


def artifact_scope(rel_path: str) -> ArtifactScope:
    """Parse `<exp>/<run_id>/artifacts/...` or `<exp>/models/m-<32hex>/artifacts/...`.

    Expects a path that went through `safe_relative_path`. The model shape is tried first, so an
    odd run id of `models` never hides a logged model.
    """
    parts = rel_path.split("/") if rel_path else []
    if len(parts) >= 4 and parts[1] == MODELS_DIR and parts[3] == ARTIFACTS_DIR:
        exp, model_id = parts[0], parts[2]
        if EXPERIMENT_ID_RE.match(exp) and MODEL_ID_RE.match(model_id):
            return ArtifactScope(path="/".join(parts[4:]), experiment_id=exp, model_id=model_id)
    if len(parts) >= 3 and parts[2] == ARTIFACTS_DIR:
        exp, run_id = parts[0], parts[1]
        if EXPERIMENT_ID_RE.match(exp) and RUN_ID_RE.match(run_id):
            return ArtifactScope(path="/".join(parts[3:]), experiment_id=exp, run_id=run_id)
    return ArtifactScope(path=rel_path)
