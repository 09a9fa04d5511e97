"""TLS through nginx: the shipped TLS snippet with a certificate made here (a private CA signs
the server certificate), and the stock client trusting that CA via
MLFLOW_TRACKING_SERVER_CERT_PATH, with basic auth over the encrypted channel."""

from __future__ import annotations

import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.security.conftest import ADMIN, ADMIN_PASSWORD, AUTH_ENV, start_stack
from tests.services import Services, free_port, start_nginx
from tests.stack import REPO, Stack, make_stack, router_config

pytestmark = pytest.mark.integration

TLS_TEMPLATE = REPO / "compose" / "nginx" / "genesis-flow-tls.conf.template"


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throwaway CA and a 127.0.0.1/localhost certificate."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=genesis-flow test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


@pytest.fixture(scope="module")
def tls_stack(services: Services, tmp_path_factory) -> Iterator[tuple[Stack, Path]]:
    ca, cert, key = make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))
    stack = make_stack(services, "tls", **AUTH_ENV)
    stop = None
    try:
        start_stack(stack, "distributed")
        conf = router_config(f"127.0.0.1:{free_port()}", [f"127.0.0.1:{stack.ports['ingest']}"],
                             [f"127.0.0.1:{stack.ports['query']}"])
        tls = TLS_TEMPLATE.read_text()
        for name, value in (("GENESIS_TLS_LISTEN", "127.0.0.1:{{LISTEN_PORT}}"), ("GENESIS_TLS_CERT", str(cert)),
                            ("GENESIS_TLS_KEY", str(key))):
            tls = tls.replace("${" + name + "}", value)
        port, stop = start_nginx(conf.rstrip().removesuffix("}") + tls + "\n}\n")
        stack.ports["tls"] = port
        yield stack, ca
    finally:
        if stop is not None:
            stop()
        stack.stop()


def test_stock_client_over_tls_with_a_private_ca(tls_stack, monkeypatch) -> None:
    stack, ca = tls_stack
    uri = f"https://127.0.0.1:{stack.ports['tls']}"
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(ca))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"tls-{uuid.uuid4().hex[:6]}")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.log_text("over tls", "note.txt", run_id=run.info.run_id)
    finally:
        mlflow.set_tracking_uri(None)
    assert Path(client.download_artifacts(run.info.run_id, "note.txt")).read_text() == "over tls"


def test_tls_policy(tls_stack) -> None:
    stack, ca = tls_stack
    uri = f"https://127.0.0.1:{stack.ports['tls']}"
    resp = requests.get(uri + "/health", verify=str(ca), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(uri + "/health", timeout=10)  # not trusted without the CA
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(ca))
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises(ssl.SSLError):  # TLS 1.0/1.1 are refused
        with socket.create_connection(("127.0.0.1", stack.ports["tls"]), timeout=10) as sock:
            with old.wrap_socket(sock, server_hostname="127.0.0.1"):
                pass
