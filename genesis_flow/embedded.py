"""Where `genesis-flow standalone` finds its embedded MongoDB wire-protocol server.

SecantusDB ships two servers with the same flags: `secantusd-rs` (Rust, `cargo install`, much
faster) and `secantusd-py` (the `standalone` extra). The Python one must be found where pip put
it, which is not always on PATH: a venv that is not activated, a systemd unit, a Dockerfile
`CMD` or `pipx` all run `/path/to/venv/bin/genesis-flow` with a PATH that lacks that directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

RUST = "secantusd-rs"
PYTHON = "secantusd-py"
PY_MODULE = "secantus"  # `python -m secantus` is `secantusd-py`

INSTALL_HINT = (
    "genesis-flow standalone needs an embedded MongoDB-compatible server, and none was found.\n"
    f"  Install the Python one into this environment:  {sys.executable} -m pip install 'SecantusDB>=0.7.0b3'\n"
    "  (or reinstall with the extra: pip install 'genesis-flow[standalone]'),\n"
    "  or build the fast one:  cargo install secantus-mdb --version 0.5.3-beta.196 --ignore-rust-version,\n"
    "  or point at a MongoDB you run:  GENESIS_FLOW_MONGODB_URI=mongodb://host:27017/")


@dataclass(frozen=True)
class EmbeddedServer:
    name: str  # RUST or PYTHON: which server this is, for the log line
    argv: tuple[str, ...]  # the command that starts it, before its flags


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_embedded_server(*, path: str | None = None, home: Path | None = None,
                         python: str | None = None, module_available: bool | None = None) -> EmbeddedServer | None:
    """The server to start, fastest first; None when there is none.

    Order: `secantusd-rs` on PATH or in `~/.cargo/bin`; `secantusd-py` beside the running
    interpreter (the venv or pipx environment genesis-flow was installed into);
    `python -m secantus` when the package is importable; `secantusd-py` on PATH.
    The keyword arguments default to this process's environment (tests pass their own).
    """
    path = os.environ.get("PATH", "") if path is None else path
    home = Path.home() if home is None else home
    python = sys.executable if python is None else python
    if module_available is None:
        module_available = importlib.util.find_spec(PY_MODULE) is not None

    rust = shutil.which(RUST, path=path)
    if rust is None and _executable(home / ".cargo" / "bin" / RUST):
        rust = str(home / ".cargo" / "bin" / RUST)
    if rust is not None:
        return EmbeddedServer(RUST, (rust,))
    # Not resolved: a venv's python is a symlink, and its scripts sit beside the link.
    beside = Path(python).parent / PYTHON
    if _executable(beside):
        return EmbeddedServer(PYTHON, (str(beside),))
    if module_available:
        return EmbeddedServer(PYTHON, (python, "-m", PY_MODULE))
    on_path = shutil.which(PYTHON, path=path)
    if on_path is not None:
        return EmbeddedServer(PYTHON, (on_path,))
    return None
