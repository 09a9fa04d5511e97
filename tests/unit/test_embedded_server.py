"""Where `genesis-flow standalone` looks for its embedded MongoDB wire server."""

from __future__ import annotations

from pathlib import Path

from genesis_flow.embedded import PY_MODULE, PYTHON, RUST, find_embedded_server


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_python_server_beside_the_interpreter_is_found_without_path(tmp_path: Path) -> None:
    venv_python = tmp_path / "venv" / "bin" / "python"
    server = _exe(tmp_path / "venv" / "bin" / PYTHON)
    found = find_embedded_server(path="/usr/bin:/bin", home=tmp_path / "home", python=str(venv_python),
                                 module_available=False)
    assert found is not None and found.name == PYTHON and found.argv == (str(server),)


def test_rust_server_in_cargo_bin_is_preferred(tmp_path: Path) -> None:
    _exe(tmp_path / "venv" / "bin" / PYTHON)
    rust = _exe(tmp_path / "home" / ".cargo" / "bin" / RUST)
    found = find_embedded_server(path="/usr/bin:/bin", home=tmp_path / "home",
                                 python=str(tmp_path / "venv" / "bin" / "python"), module_available=True)
    assert found is not None and found.name == RUST and found.argv == (str(rust),)


def test_rust_server_on_path_is_preferred(tmp_path: Path) -> None:
    rust = _exe(tmp_path / "tools" / RUST)
    found = find_embedded_server(path=f"/usr/bin:{tmp_path / 'tools'}", home=tmp_path / "home",
                                 python=str(tmp_path / "python"), module_available=True)
    assert found is not None and found.argv == (str(rust),)


def test_importable_package_runs_as_a_module_of_this_interpreter(tmp_path: Path) -> None:
    python = str(tmp_path / "venv" / "bin" / "python")
    found = find_embedded_server(path="/usr/bin:/bin", home=tmp_path / "home", python=python,
                                 module_available=True)
    assert found is not None and found.name == PYTHON and found.argv == (python, "-m", PY_MODULE)


def test_python_server_on_path_is_the_last_resort(tmp_path: Path) -> None:
    on_path = _exe(tmp_path / "elsewhere" / PYTHON)
    found = find_embedded_server(path=str(tmp_path / "elsewhere"), home=tmp_path / "home",
                                 python=str(tmp_path / "venv" / "bin" / "python"), module_available=False)
    assert found is not None and found.argv == (str(on_path),)


def test_nothing_installed_is_none(tmp_path: Path) -> None:
    assert find_embedded_server(path=str(tmp_path), home=tmp_path, python=str(tmp_path / "python"),
                                module_available=False) is None


def test_a_non_executable_file_is_not_a_server(tmp_path: Path) -> None:
    (tmp_path / "home" / ".cargo" / "bin").mkdir(parents=True)
    (tmp_path / "home" / ".cargo" / "bin" / RUST).write_text("not executable")
    assert find_embedded_server(path=str(tmp_path), home=tmp_path / "home", python=str(tmp_path / "python"),
                                module_available=False) is None
