"""Real servers for the test suite (never mocks): MongoDB wire server, RabbitMQ, Azurite.

Two backends:

* **docker** -- when a Docker engine answers: throw-away containers through testcontainers
  (``mongo:7`` as a one-member replica set so transactions/change streams work like on
  SecantusDB, ``rabbitmq:3.13-management``, ``azurite-blob`` 3.35.0).
* **local** -- otherwise: the servers that ``bash scripts/services.sh start`` runs on this
  machine (how CI runs). Endpoints come from ``GENESIS_FLOW_TEST_MONGODB_URI``,
  ``GENESIS_FLOW_TEST_AMQP_URL`` and ``GENESIS_FLOW_TEST_AZURE_CONNECTION_STRING`` and
  default to what ``bash scripts/services.sh env`` prints.

Backend choice: ``GENESIS_FLOW_TEST_DOCKER=0|1`` forces it; otherwise explicitly set
``GENESIS_FLOW_TEST_*`` endpoints win (local), else Docker when available, else local.

Also: RabbitMQ outage helpers, unique names, free ports, and a throw-away nginx.
This is a plain module (no pytest import) so conftest.py and scripts can both use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "DEFAULT_AMQP_URL",
    "DEFAULT_AZURE_CONNECTION_STRING",
    "DEFAULT_MONGODB_URI",
    "Services",
    "ServicesUnavailable",
    "amqp_answers",
    "describe_mongo_server",
    "docker_available",
    "free_port",
    "rabbitmq_outage",
    "rabbitmq_start",
    "rabbitmq_stop",
    "start_nginx",
    "start_services",
    "unique_name",
    "uses_docker",
    "wait_for_port",
]

AZURITE_ACCOUNT_NAME = "devstoreaccount1"
# The well-known, public Azurite development key (not a secret).
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

DEFAULT_MONGODB_URI = "mongodb://127.0.0.1:27017/?directConnection=true"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _azurite_connection_string(host: str, port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};"
        f"AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT_NAME};"
    )


DEFAULT_AZURE_CONNECTION_STRING = _azurite_connection_string("127.0.0.1", 10000)

ENV_MONGODB_URI = "GENESIS_FLOW_TEST_MONGODB_URI"
ENV_AMQP_URL = "GENESIS_FLOW_TEST_AMQP_URL"
ENV_AZURE = "GENESIS_FLOW_TEST_AZURE_CONNECTION_STRING"
ENV_DOCKER = "GENESIS_FLOW_TEST_DOCKER"

START_HINT = (
    "Start the local test servers with:  bash scripts/services.sh start\n"
    "(first time on a machine:  bash scripts/services.sh install)"
)

MONGO_IMAGE = "mongo:7"
RABBITMQ_IMAGE = "rabbitmq:3.13-management"
AZURITE_IMAGE = "mcr.microsoft.com/azure-storage/azurite:3.35.0"


class ServicesUnavailable(RuntimeError):
    """A test server is not reachable (message says how to start it)."""


@dataclasses.dataclass(frozen=True)
class Services:
    mongodb_uri: str
    amqp_url: str
    azure_connection_string: str
    backend: str = "local"  # "local" or "docker"


# ---------------------------------------------------------------- small helpers


def unique_name(prefix: str = "t") -> str:
    """Short unique name usable as a MongoDB database name or queue prefix: [a-z0-9_]."""
    clean = re.sub(r"[^a-z0-9_]+", "_", prefix.lower()).strip("_")[:40] or "t"
    return f"{clean}_{uuid.uuid4().hex[:12]}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 trick; racy but fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Block until host:port accepts a TCP connection; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if _port_accepts(host, port, timeout=min(1.0, max(0.05, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept a TCP connection within {timeout:.0f}s")
        time.sleep(0.1)


def amqp_answers(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when an AMQP 0-9-1 broker answers the protocol header with connection.start.

    Stronger than a TCP connect: a docker-proxy port accepts before the broker is up.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1) == b"\x01"  # frame type 1 = method frame (connection.start)
    except OSError:
        return False


def _amqp_host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    default = 5671 if u.scheme == "amqps" else 5672
    return (u.hostname or "127.0.0.1"), (u.port or default)


def _blob_host_port(connection_string: str) -> tuple[str, int]:
    parts = dict(
        p.split("=", 1) for p in connection_string.split(";") if "=" in p
    )
    endpoint = parts.get("BlobEndpoint")
    if endpoint:
        u = urlsplit(endpoint)
        return (u.hostname or "127.0.0.1"), (u.port or (443 if u.scheme == "https" else 80))
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return "127.0.0.1", 10000
    raise ValueError("Azure connection string has no BlobEndpoint")


def _mongo_ping(uri: str, timeout_ms: int = 3000) -> None:
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def describe_mongo_server(uri: str, timeout_ms: int = 2000) -> str:
    """Which MongoDB wire server answers at `uri`: secantusd-rs, secantusd-py or mongod, and its version."""
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        info = client.admin.command("buildInfo")
    except Exception as exc:  # noqa: BLE001 - a report line, not a check
        return f"no answer at {uri} ({type(exc).__name__})"
    finally:
        client.close()
    if "secantusVersion" not in info:
        return f"mongod {info.get('version')} at {uri}"
    rust = (info.get("buildEnvironment") or {}).get("cc") == "rustc"
    return f"{'secantusd-rs' if rust else 'secantusd-py'} {info['secantusVersion']} at {uri}"


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    """Quick check for a usable Docker engine (``docker info`` within 3 s, or the socket)."""
    if shutil.which("docker"):
        try:
            r = subprocess.run(
                ["docker", "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                timeout=3,
            )
            if r.returncode == 0 and r.stdout.strip():
                return True
        except (OSError, subprocess.SubprocessError):
            pass
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return False  # tcp:// etc.: the CLI check above is the one that counts
    path = host[len("unix://"):] if host else "/var/run/docker.sock"
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return s.recv(64).split(b"\r\n", 1)[0].endswith(b"200 OK")
    except OSError:
        return False


def uses_docker() -> bool:
    flag = os.environ.get(ENV_DOCKER, "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    if flag in {"1", "true", "yes", "on"}:
        if not docker_available():
            raise ServicesUnavailable(f"{ENV_DOCKER}={flag} but no Docker engine answers")
        return True
    if any(os.environ.get(k) for k in (ENV_MONGODB_URI, ENV_AMQP_URL, ENV_AZURE)):
        return False
    return docker_available()


# --------------------------------------------------------------------- state
# One set of servers per process, shared by every start_services() caller
# (reference counted), so conftest and individual test modules can both ask.


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refs = 0
        self.services: Services | None = None
        self.containers: dict[str, object] = {}


_state = _State()


def start_services() -> tuple[Services, Callable[[], None]]:
    """Endpoints of running test servers and a cleanup function (idempotent)."""
    with _state.lock:
        if _state.refs == 0:
            if uses_docker():
                _state.services, _state.containers = _start_docker()
            else:
                _state.services, _state.containers = _start_local(), {}
        _state.refs += 1
        services = _state.services
    assert services is not None
    done = False

    def cleanup() -> None:
        nonlocal done
        with _state.lock:
            if done:
                return
            done = True
            _state.refs -= 1
            if _state.refs > 0:
                return
            containers, _state.containers, _state.services = _state.containers, {}, None
        for c in containers.values():
            with contextlib.suppress(Exception):
                c.stop()  # testcontainers: removes the container

    return services, cleanup


def _start_local() -> Services:
    services = Services(
        mongodb_uri=os.environ.get(ENV_MONGODB_URI) or DEFAULT_MONGODB_URI,
        amqp_url=os.environ.get(ENV_AMQP_URL) or DEFAULT_AMQP_URL,
        azure_connection_string=os.environ.get(ENV_AZURE) or DEFAULT_AZURE_CONNECTION_STRING,
        backend="local",
    )
    problems: list[str] = []
    try:
        _mongo_ping(services.mongodb_uri)
    except Exception as exc:  # noqa: BLE001 - report every failure at once
        problems.append(f"MongoDB wire server {services.mongodb_uri}: no answer to ping ({type(exc).__name__}: {exc})")
    host, port = _amqp_host_port(services.amqp_url)
    if not amqp_answers(host, port):
        problems.append(f"RabbitMQ {host}:{port}: no AMQP answer")
    try:
        host, port = _blob_host_port(services.azure_connection_string)
        if not _port_accepts(host, port, timeout=2):
            problems.append(f"Azurite blob {host}:{port}: connection refused")
    except ValueError as exc:
        problems.append(f"{ENV_AZURE}: {exc}")
    if problems:
        raise ServicesUnavailable(
            "Test servers are not reachable (no Docker engine, so the local ones are used):\n  - "
            + "\n  - ".join(problems)
            + "\n"
            + START_HINT
        )
    return services


# -------------------------------------------------------------------- docker


def _start_docker() -> tuple[Services, dict[str, object]]:
    # Generic containers with our own readiness checks: works across testcontainers
    # 4.x layouts and does not need `pika` (the RabbitMqContainer module imports it).
    from testcontainers.core.container import DockerContainer

    containers: dict[str, object] = {}
    try:
        mongo = (
            DockerContainer(MONGO_IMAGE)
            .with_command("--replSet rs0 --bind_ip_all")
            .with_exposed_ports(27017)
        )
        # Fixed host port so that a stop/start of the container (outage tests) keeps
        # the URL valid.
        rabbit = DockerContainer(RABBITMQ_IMAGE).with_bind_ports(5672, free_port())
        azurite = (
            DockerContainer(AZURITE_IMAGE)
            .with_command(
                "azurite-blob --blobHost 0.0.0.0 --blobPort 10000 --skipApiVersionCheck --loose"
            )
            .with_exposed_ports(10000)
        )
        for name, c in (("mongodb", mongo), ("rabbitmq", rabbit), ("azurite", azurite)):
            c.start()
            containers[name] = c

        host = mongo.get_container_host_ip()
        mongo_uri = f"mongodb://{host}:{mongo.get_exposed_port(27017)}/?directConnection=true"
        _init_mongo_replset(mongo_uri)

        rhost, rport = rabbit.get_container_host_ip(), int(rabbit.get_exposed_port(5672))
        _wait_amqp(rhost, rport, timeout=120)
        amqp_url = f"amqp://guest:guest@{rhost}:{rport}/"

        ahost, aport = azurite.get_container_host_ip(), int(azurite.get_exposed_port(10000))
        _wait_http(ahost, aport, timeout=60)
        azure = _azurite_connection_string(ahost, aport)
    except BaseException:
        for c in containers.values():
            with contextlib.suppress(Exception):
                c.stop()
        raise
    return Services(mongo_uri, amqp_url, azure, backend="docker"), containers


def _init_mongo_replset(uri: str, timeout: float = 90) -> None:
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError

    deadline = time.monotonic() + timeout
    client = MongoClient(uri, serverSelectionTimeoutMS=2000)
    try:
        while True:
            try:
                client.admin.command("ping")
                break
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            client.admin.command(
                "replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]}
            )
        except OperationFailure as exc:
            if "already initialized" not in str(exc):
                raise
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise TimeoutError("mongo:7 replica set did not elect a primary")
            time.sleep(0.3)
    finally:
        client.close()


def _wait_amqp(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not amqp_answers(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"RabbitMQ at {host}:{port} did not answer AMQP within {timeout:.0f}s")
        time.sleep(0.5)


def _wait_http(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(2)
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                if s.recv(5) == b"HTTP/":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"HTTP server at {host}:{port} did not answer within {timeout:.0f}s")
        time.sleep(0.3)


# ----------------------------------------------------------- RabbitMQ outage


def _current() -> Services:
    return _state.services or Services(
        mongodb_uri=os.environ.get(ENV_MONGODB_URI) or DEFAULT_MONGODB_URI,
        amqp_url=os.environ.get(ENV_AMQP_URL) or DEFAULT_AMQP_URL,
        azure_connection_string=os.environ.get(ENV_AZURE) or DEFAULT_AZURE_CONNECTION_STRING,
    )


def _rabbitmqctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rabbitmqctl") or shutil.which(
        "rabbitmqctl", path="/usr/sbin:/usr/local/sbin:/usr/lib/rabbitmq/bin"
    )
    if exe is None:
        raise ServicesUnavailable("rabbitmqctl not found.\n" + START_HINT)
    cmd = [exe, "-q", *args]
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd = ["sudo", "-n", *cmd]  # Debian's wrapper only runs as root or rabbitmq
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _local_broker() -> tuple[str, int]:
    host, port = _amqp_host_port(_current().amqp_url)
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise RuntimeError(
            f"rabbitmq_stop/start drive the local node with rabbitmqctl; {host} is not local"
        )
    return host, port


def rabbitmq_stop(timeout: float = 60) -> None:
    """Take the broker down (connections drop, port closes). Durable queues keep their data.

    Local: ``rabbitmqctl stop_app`` (the Erlang node keeps running, so restart is quick).
    Docker: stops (not removes) the container.
    """
    s = _current()
    host, port = _amqp_host_port(s.amqp_url)
    if s.backend == "docker":
        _state.containers["rabbitmq"].get_wrapped_container().stop(timeout=30)  # type: ignore[attr-defined]
    else:
        _local_broker()
        r = _rabbitmqctl("stop_app", timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl stop_app failed ({r.returncode}): {r.stdout}{r.stderr}")
    deadline = time.monotonic() + timeout
    while amqp_answers(host, port, timeout=1):
        if time.monotonic() > deadline:
            raise TimeoutError(f"RabbitMQ at {host}:{port} still answers after stop")
        time.sleep(0.2)


def rabbitmq_start(timeout: float = 120) -> None:
    """Bring the broker back after :func:`rabbitmq_stop`; returns once AMQP answers."""
    s = _current()
    host, port = _amqp_host_port(s.amqp_url)
    deadline = time.monotonic() + timeout
    if s.backend == "docker":
        _state.containers["rabbitmq"].get_wrapped_container().start()  # type: ignore[attr-defined]
    else:
        _local_broker()
        r = _rabbitmqctl("start_app", timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl start_app failed ({r.returncode}): {r.stdout}{r.stderr}")
        while True:  # await_startup exits 69 if asked too early
            r = _rabbitmqctl("await_startup", "--timeout", "60", timeout=90)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"rabbitmqctl await_startup: {r.stdout}{r.stderr}")
            time.sleep(1)
    _wait_amqp(host, port, timeout=max(1.0, deadline - time.monotonic()))


@contextlib.contextmanager
def rabbitmq_outage() -> Iterator[None]:
    """``with rabbitmq_outage(): ...`` -- broker down inside, always restarted after."""
    rabbitmq_stop()
    try:
        yield
    finally:
        rabbitmq_start()


# --------------------------------------------------------------------- nginx

_TEMP_DIRECTIVES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def start_nginx(conf_text: str, timeout: float = 15) -> tuple[int, Callable[[], None]]:
    """Run nginx in the foreground with ``conf_text`` on a free port; returns (port, stop).

    ``conf_text`` is a full nginx.conf (with ``events {}`` and ``http {}``) whose listen
    port is ``{{LISTEN_PORT}}``; ``{{PREFIX}}`` (optional) becomes the temp dir. Everything
    nginx writes stays in that temp dir: error/access logs under ``logs/``, pid file, and the
    body/proxy temp paths (injected into ``http {`` unless the config sets them). ``pid`` and
    ``daemon`` lines are dropped: the command line sets them.
    """
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        raise ServicesUnavailable("nginx is not installed: run  bash scripts/services.sh install")
    prefix = tempfile.mkdtemp(prefix="gf-nginx-")
    os.chmod(prefix, 0o755)  # worker processes (www-data when run as root) must traverse it
    logs = os.path.join(prefix, "logs")
    os.makedirs(logs)
    os.makedirs(os.path.join(prefix, "temp"))
    port = free_port()

    text = conf_text.replace("{{LISTEN_PORT}}", str(port)).replace("{{PREFIX}}", prefix)
    leftover = sorted(set(re.findall(r"\{\{[A-Za-z0-9_]+\}\}", text)))
    if leftover:
        shutil.rmtree(prefix, ignore_errors=True)
        raise ValueError(f"nginx config still has placeholders: {', '.join(leftover)}")
    text = re.sub(r"(?m)^\s*(pid|daemon)\s+[^;]*;\s*$", "", text)
    if not re.search(r"(?m)^\s*error_log\s", text):
        text = f"error_log {logs}/error.log warn;\n" + text
    if "client_body_temp_path" not in text:
        temp = "".join(
            f"\n    {d}_temp_path {prefix}/temp/{d};" for d in _TEMP_DIRECTIVES
        )
        text, n = re.subn(r"(?m)^(\s*http\s*\{)", lambda m: m.group(1) + temp, text, count=1)
        if n == 0:
            shutil.rmtree(prefix, ignore_errors=True)
            raise ValueError("nginx config has no 'http {' block")
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)

    out = open(os.path.join(logs, "stdout.log"), "wb")
    proc = subprocess.Popen(
        [
            nginx,
            "-p", prefix + "/",
            "-c", conf,
            "-e", os.path.join(logs, "error.log"),
            "-g", f"daemon off; pid {prefix}/nginx.pid;",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        if proc.poll() is None:
            proc.terminate()  # SIGTERM = fast shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        out.close()
        shutil.rmtree(prefix, ignore_errors=True)

    deadline = time.monotonic() + timeout
    while not _port_accepts("127.0.0.1", port, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            details = _read_tail(os.path.join(logs, "stdout.log")) + _read_tail(
                os.path.join(logs, "error.log")
            )
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
            stop()
            raise RuntimeError(f"nginx {why} before listening on port {port}:\n{details}")
        time.sleep(0.05)
    return port, stop


def _read_tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""
