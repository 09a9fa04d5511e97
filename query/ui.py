"""The MLflow web UI: its React build, served from the installed `mlflow` package.

The build ships inside the mlflow wheel (`mlflow/server/js/build`); the `ui` extra installs it.
It is located at run time without importing mlflow (slow, and not a dependency of this tier):
nothing of it is copied into this repository. Like the reference server, `/` is `index.html`
(the UI routes with `#/...`, so no other path needs it) and `/static-files/<path>` are the
build's files with long cache headers (their names carry content hashes).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

from aiohttp import web

from common.artifacts import safe_relative_path
from common.errors import MlflowError
from query.server_info import MLFLOW_VERSION

log = logging.getLogger(__name__)

STATIC_MAX_AGE_S = 2419200  # the reference server's max_age for /static-files

NOT_INSTALLED = """<!doctype html><html><head><meta charset="utf-8"><title>Genesis-Flow</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Genesis-Flow</h1>
<p>This MLflow tracking server is running; the MLflow web UI is not installed here.</p>
<p>Install it into the server's environment and restart: <code>pip install 'genesis-flow[ui]'</code>
(the UI ships inside the <code>mlflow</code> package).</p>
</body></html>
"""


def find_ui_build() -> Path | None:
    """The installed mlflow's UI build directory, or None when mlflow (or its build) is absent."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.origin:
        return None
    build = Path(spec.origin).parent / "server" / "js" / "build"
    return build if (build / "index.html").is_file() else None


def _check_version() -> None:
    try:
        installed = importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return
    if installed.rsplit(".", 1)[0] != MLFLOW_VERSION.rsplit(".", 1)[0]:
        log.warning("the installed mlflow UI is %s; this server speaks MLflow %s's API (pip install "
                    "'genesis-flow[ui]' installs a matching one)", installed, MLFLOW_VERSION)


def ui_routes(build: Path | None) -> list[tuple[str, str, web.RequestHandler]]:
    """(method, path, handler) for the UI's own files (absolute paths, not under an API prefix)."""
    if build is None:
        async def not_installed(_: web.Request) -> web.Response:
            return web.Response(text=NOT_INSTALLED, content_type="text/html")
        return [("GET", "/", not_installed)]
    _check_version()
    root = build.resolve()

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})

    async def static_file(request: web.Request) -> web.StreamResponse:
        try:
            relative = safe_relative_path(request.match_info["path"])
        except MlflowError:
            raise web.HTTPNotFound() from None
        path = (root / relative).resolve()
        if not relative or root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}"})

    return [("GET", "/", index), ("GET", "/static-files/{path:.+}", static_file)]
