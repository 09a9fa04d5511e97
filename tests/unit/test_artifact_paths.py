"""Artifact path safety: what a client may name, what it becomes, and what it belongs to.

The input of `safe_relative_path` is what aiohttp hands over after decoding the URL once, so a
`%2e` here arrived as `%252e` on the wire.
"""

from __future__ import annotations

import pytest

from common.artifacts.paths import (
    ArtifactScope,
    artifact_scope,
    is_within,
    join_under,
    model_artifact_root,
    run_artifact_root,
    safe_relative_path,
)
from common.errors import INVALID_PARAMETER_VALUE, MlflowError

MODEL = "m-" + "0123456789abcdef" * 2
RUN = "b12fa76ed9d749ab84f9e4f510940c18"

REFUSED = [
    # climbing out with `..`
    "..",
    "../x",
    "a/../../b",
    "a/b/..",
    "./..",
    "a/./../..",
    "a/b/../../..",
    "a//..//x",
    # percent-encoded dots, slashes, backslashes, percent signs (left over after one decode)
    "%2e%2e/x",
    "%2E%2E%2Fetc",
    "..%2fx",
    "..%2Fx",
    "%2e%2e%5cx",
    "%252e%252e/x",
    "%25252e%25252e/x",
    "a/%2e%2e",
    "%2ex",
    "a%2fb",
    "a%5cb",
    "100%25",
    "%%32e%%32e/x",  # `%%32e` -> `%2e` on a second decode
    "%c0%ae%c0%ae/x",  # overlong UTF-8 for `.`: not valid UTF-8
    # backslashes and absolute paths
    "a\\..\\b",
    "..\\x",
    "a\\b",
    "/etc/passwd",
    "//etc/passwd",
    "/",
    "C:\\Windows",
    "C:/x",
    "C:x",
    "c:",
    "\\\\srv\\share",
    "file:///etc/passwd",
    "file:x",
    "mlflow-artifacts:/1/x",
    # control characters, NUL, fragments
    "a/\x00b",
    "a\x00",
    "%00",
    "a/%00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x7fb",
    "a\x85b",  # C1 control (NEL)
    "a%0ab",
    "a#b",
    "%23x",
    # Unicode that folds (NFKC) into `.`, `..`, `/` or `\`
    "\u2025/x",  # TWO DOT LEADER
    "\uff0e\uff0e/x",  # FULLWIDTH FULL STOP x2
    "a/\uff0e",
    "a\uff0fb",  # FULLWIDTH SOLIDUS
    "a\uff3cb",  # FULLWIDTH REVERSE SOLIDUS
    "\ud800",  # lone surrogate
    # too long for a file name or a blob name
    "a" * 256,
    "é" * 128,  # 256 UTF-8 bytes
    "/".join(["abcdefghij"] * 100),  # 1099 characters
]

ACCEPTED = [
    ("reports/report.txt", "reports/report.txt"),
    ("model/MLmodel", "model/MLmodel"),
    (f"1/{RUN}/artifacts/reports/report.txt", f"1/{RUN}/artifacts/reports/report.txt"),
    (f"2/models/{MODEL}/artifacts/model.skops", f"2/models/{MODEL}/artifacts/model.skops"),
    ("a//b", "a/b"),
    ("a/./b", "a/b"),
    ("./a", "a"),
    ("a/", "a"),
    ("a/.", "a"),
    ("", ""),
    (".", ""),
    ("./", ""),
    ("....", "...."),
    ("....//", "...."),
    ("...", "..."),
    ("a..b/..c/d..", "a..b/..c/d.."),
    (".hidden/.env", ".hidden/.env"),
    ("~", "~"),
    ("~/x", "~/x"),
    ("my report 2024/final v2.txt", "my report 2024/final v2.txt"),
    ("résumé – 数据/файл.txt", "résumé – 数据/файл.txt"),
    ("\u2024x", "\u2024x"),  # ONE DOT LEADER is a different character from `.` and folds to `.x`
    ("100%.txt", "100%.txt"),
    ("50%off", "50%off"),
    ("a%20b", "a b"),  # a leftover escape of an ordinary character decodes, as in MLflow
    ("x%41", "xA"),
    ("%e6%95%b0", "数"),
    ("1/x/y:z.txt", "1/x/y:z.txt"),
    ("1:2/x", "1:2/x"),  # no letter first: not a drive or a URI scheme
    ("a b", "a b"),
    ("a" * 255, "a" * 255),
    ("é" * 127, "é" * 127),
]


@pytest.mark.parametrize("raw", REFUSED, ids=repr)
def test_escaping_or_malicious_paths_are_refused(raw: str):
    with pytest.raises(MlflowError) as info:
        safe_relative_path(raw)
    assert info.value.error_code == INVALID_PARAMETER_VALUE
    assert info.value.http_status == 400
    assert info.value.message == "Invalid path"


@pytest.mark.parametrize(("raw", "normalised"), ACCEPTED, ids=lambda v: repr(v))
def test_legal_paths_are_accepted_and_normalised(raw: str, normalised: str):
    assert safe_relative_path(raw) == normalised


@pytest.mark.parametrize(("raw", "normalised"), ACCEPTED, ids=lambda v: repr(v))
def test_normalising_twice_changes_nothing(raw: str, normalised: str):
    assert safe_relative_path(normalised) == normalised


def test_the_tables_are_large_enough():
    assert len(REFUSED) >= 25
    assert len(ACCEPTED) >= 10


def test_non_strings_are_refused():
    with pytest.raises(MlflowError):
        safe_relative_path(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("root", "path", "inside"),
    [
        ("/data/artifacts", "/data/artifacts", True),
        ("/data/artifacts", "/data/artifacts/1/x", True),
        ("/data/artifacts/", "/data/artifacts/1/x", True),
        ("/data/artifacts", "/data/artifacts/../secrets", False),
        ("/data/artifacts", "/data/artifacts-old/x", False),
        ("/data/artifacts", "/data", False),
        ("/data/artifacts", "data/artifacts/x", False),
        ("/", "/anything", True),
        ("prefix", "prefix/1/x", True),
        ("prefix", "prefix2/x", False),
        ("", "1/x", True),
        ("", "../x", False),
        ("", "/x", False),
        ("", "", True),
    ],
)
def test_is_within(root: str, path: str, inside: bool):
    assert is_within(root, path) is inside


def test_join_under_puts_a_client_path_below_the_root():
    assert join_under("prefix", "1//x") == "prefix/1/x"
    assert join_under("prefix/", "a") == "prefix/a"
    assert join_under("", "a/b") == "a/b"
    assert join_under("prefix", "") == "prefix"
    assert join_under("/srv/artifacts", "1/r/artifacts/m.txt") == "/srv/artifacts/1/r/artifacts/m.txt"
    for bad in ("../x", "/etc/passwd", "%2e%2e/x", "a\\..\\b"):
        with pytest.raises(MlflowError):
            join_under("prefix", bad)


def test_artifact_roots_match_the_uris_the_server_hands_out():
    assert run_artifact_root("1", RUN) == f"1/{RUN}/artifacts"
    assert model_artifact_root("2", MODEL) == f"2/models/{MODEL}/artifacts"


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        (f"1/{RUN}/artifacts/reports/report.txt",
         ArtifactScope(path="reports/report.txt", experiment_id="1", run_id=RUN)),
        (f"1/{RUN}/artifacts", ArtifactScope(path="", experiment_id="1", run_id=RUN)),
        (f"2/models/{MODEL}/artifacts/MLmodel", ArtifactScope(path="MLmodel", experiment_id="2", model_id=MODEL)),
        (f"2/models/{MODEL}/artifacts/sub/dir/f.bin",
         ArtifactScope(path="sub/dir/f.bin", experiment_id="2", model_id=MODEL)),
        (f"2/models/{MODEL}/artifacts", ArtifactScope(path="", experiment_id="2", model_id=MODEL)),
        # `models` is also a legal run id: without a model id in the third place it is a run
        ("2/models/artifacts/x", ArtifactScope(path="x", experiment_id="2", run_id="models")),
        # shapes of neither kind: still storable, no ids
        ("reports/report.txt", ArtifactScope(path="reports/report.txt")),
        (f"1/{RUN}/outputs/x", ArtifactScope(path=f"1/{RUN}/outputs/x")),
        ("2/models/m-short/artifacts/x", ArtifactScope(path="2/models/m-short/artifacts/x")),
        (f"-1/{RUN}/artifacts/x", ArtifactScope(path=f"-1/{RUN}/artifacts/x")),
        ("1", ArtifactScope(path="1")),
        ("", ArtifactScope(path="")),
    ],
)
def test_artifact_scope_tells_what_a_path_belongs_to(path: str, scope: ArtifactScope):
    assert artifact_scope(path) == scope


def test_artifact_scope_root_round_trips():
    assert artifact_scope(f"1/{RUN}/artifacts/a/b").root == run_artifact_root("1", RUN)
    assert artifact_scope(f"2/models/{MODEL}/artifacts/MLmodel").root == model_artifact_root("2", MODEL)
    assert artifact_scope("x/y").root is None
