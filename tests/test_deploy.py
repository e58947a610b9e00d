"""Static checks of deploy/: Dockerfile, compose file, Kubernetes manifests,
Prometheus rules and the Grafana dashboard, without docker or kubectl.

Names are checked against the code they configure: environment variables against
the ``Settings`` fields, metric names against the metrics the server registers,
commands against the console scripts in setup.cfg.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.server.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
NAMESPACE = "offer-bandit"

EXPECTED_FILES = [
    "Dockerfile",
    "docker-compose.yml",
    "README.md",
    "k8s/namespace.yaml",
    "k8s/configmap.yaml",
    "k8s/server-deployment.yaml",
    "k8s/server-service.yaml",
    "k8s/learner-deployment.yaml",
    "k8s/models-pvc.yaml",
    "k8s/poddisruptionbudget.yaml",
    "k8s/hpa.yaml",
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
    "grafana/provisioning/datasources/prometheus.yml",
    "grafana/provisioning/dashboards/dashboards.yml",
    "grafana/dashboards/bandit.json",
]

# file -> the (apiVersion, kind, name) of every document it holds
K8S_DOCUMENTS = {
    "namespace.yaml": [("v1", "Namespace", NAMESPACE)],
    "configmap.yaml": [("v1", "ConfigMap", "bandit-config")],
    "server-deployment.yaml": [("apps/v1", "StatefulSet", "bandit-server")],
    "server-service.yaml": [("v1", "Service", "bandit-server"),
                            ("v1", "Service", "bandit-server-headless")],
    "learner-deployment.yaml": [("apps/v1", "Deployment", "bandit-learner")],
    "models-pvc.yaml": [("v1", "PersistentVolumeClaim", "bandit-models")],
    "poddisruptionbudget.yaml": [("policy/v1", "PodDisruptionBudget", "bandit-server")],
    "hpa.yaml": [("autoscaling/v2", "HorizontalPodAutoscaler", "bandit-server")],
}

# the variables the deployment must set for a production server/learner
REQUIRED_ENV = {
    "BANDIT_HOST", "BANDIT_PORT", "BANDIT_WORKERS", "BANDIT_POLICY", "BANDIT_MODEL_DIR",
    "BANDIT_MODEL_POLL", "BANDIT_EVENT_SINK", "BANDIT_KAFKA_BOOTSTRAP",
    "BANDIT_TOPIC_PREFIX", "BANDIT_PARTITIONS", "BANDIT_SPOOL_DIR", "BANDIT_REWARD_WAIT",
    "BANDIT_CHECKPOINT_SECONDS",
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


# -- loading ------------------------------------------------------------------------------

def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def json_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.json"))


def rel(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


@cache
def load_docs(path: Path) -> tuple[Any, ...]:
    with path.open(encoding="utf-8") as f:
        return tuple(d for d in yaml.safe_load_all(f) if d is not None)


def load_one(path: Path) -> Any:
    docs = load_docs(path)
    assert len(docs) == 1, f"{rel(path)}: expected one YAML document, found {len(docs)}"
    return docs[0]


def k8s_docs() -> list[dict[str, Any]]:
    return [d for name in K8S_DOCUMENTS for d in load_docs(K8S / name)]


def k8s_find(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d.get("kind") == kind
             and d.get("metadata", {}).get("name") == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def settings_env_names() -> set[str]:
    return {"BANDIT_" + f.name.upper() for f in fields(Settings)}


def configmap_env() -> dict[str, str]:
    data: dict[str, str] = k8s_find("ConfigMap", "bandit-config")["data"]
    return data


def console_scripts() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=", 1)[0].strip() for line in lines if line.strip()}


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_one(COMPOSE)
    return doc


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {k: v for k, v in pairs}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def bandit_compose_services() -> dict[str, dict[str, Any]]:
    """Services that run the offer-bandit image."""
    return {name: svc for name, svc in compose()["services"].items()
            if "build" in svc or str(svc.get("image", "")).startswith("offer-bandit")}


def compose_command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Short-syntax compose volumes as {target: source}."""
    out = {}
    for v in service.get("volumes", []):
        assert isinstance(v, str), f"use the short volume syntax: {v!r}"
        source, target = v.split(":")[:2]
        out[target] = source
    return out


# -- PromQL -------------------------------------------------------------------------------

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (also with Grafana's ``$__`` variables)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", s):
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or aggregation
        if m.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def exported_metric_names() -> set[str]:
    """Every series name the server's metrics can produce."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def test_promql_metrics_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket{code=~"a|b"}[5m])))'
            ' / (sum(rate(y_total[$__rate_interval])) or vector(0)) > 1e-9')
    assert promql_metrics(expr) == {"x_seconds_bucket", "y_total"}


# -- every file ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPECTED_FILES)
def test_expected_file_exists(name: str) -> None:
    assert (DEPLOY / name).is_file(), f"deploy/{name} is missing"


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{rel(path)} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs), f"{rel(path)}: every document is a mapping"


@pytest.mark.parametrize("path", json_files(), ids=rel)
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


def test_found_the_files() -> None:
    assert len(yaml_files()) >= 14
    assert len(json_files()) >= 1


# -- Kubernetes ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(K8S_DOCUMENTS))
def test_k8s_documents(name: str) -> None:
    docs = load_docs(K8S / name)
    for doc in docs:
        for key in ("apiVersion", "kind", "metadata"):
            assert doc.get(key), f"{name}: a document has no {key}"
        assert doc["metadata"].get("name"), f"{name}: a {doc['kind']} has no metadata.name"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{name}: namespace"
    got = [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs]
    assert got == K8S_DOCUMENTS[name]


def test_every_k8s_manifest_is_known_and_in_the_kustomization() -> None:
    files = {p.name for p in K8S.iterdir() if p.suffix in (".yml", ".yaml")}
    assert files - {"kustomization.yaml"} == set(K8S_DOCUMENTS)
    kustomization = load_one(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == sorted(K8S_DOCUMENTS)
    assert kustomization["resources"][0] == "namespace.yaml"


def test_configmap_holds_valid_settings() -> None:
    env = configmap_env()
    unknown = set(env) - settings_env_names()
    assert not unknown, f"not Settings fields: {sorted(unknown)}"
    missing = REQUIRED_ENV - set(env)
    assert not missing, f"ConfigMap lacks {sorted(missing)}"
    assert all(isinstance(v, str) for v in env.values()), "ConfigMap values must be strings"
    s = Settings.from_env(env)  # raises ConfigError on a bad value
    assert s.host == "0.0.0.0"
    assert s.sink_kind == "kafka"
    assert s.model_dir.startswith("/") and s.spool_dir.startswith("/")
    assert s.model_dir != s.spool_dir


def test_k8s_containers_use_only_settings_env() -> None:
    names = settings_env_names()
    configmaps = {d["metadata"]["name"] for d in k8s_docs() if d["kind"] == "ConfigMap"}
    workloads = [d for d in k8s_docs() if d["kind"] in WORKLOAD_KINDS]
    assert len(workloads) == 2
    for w in workloads:
        for c in containers(pod_spec(w)):
            for var in c.get("env", []):
                assert var["name"] in names, f"{c['name']}: {var['name']} is not a setting"
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef")
                assert ref is not None, f"{c['name']}: envFrom other than a ConfigMap"
                assert ref["name"] in configmaps, f"{c['name']}: no ConfigMap {ref['name']}"
            assert c.get("env") or c.get("envFrom"), f"{c['name']} gets no configuration"


def test_k8s_commands_are_console_scripts() -> None:
    scripts = console_scripts()
    server = containers(pod_spec(k8s_find("StatefulSet", "bandit-server")))[0]
    learner = containers(pod_spec(k8s_find("Deployment", "bandit-learner")))[0]
    assert server.get("command", ["bandit-serve"])[0] == "bandit-serve"
    assert learner["command"][0] == "bandit-learn"
    for c in (server, learner):
        assert c.get("command", ["bandit-serve"])[0] in scripts


def test_learner_is_a_single_recreated_replica() -> None:
    learner = k8s_find("Deployment", "bandit-learner")
    assert learner["spec"]["replicas"] == 1
    assert learner["spec"]["strategy"]["type"] == "Recreate"
    assert "rollingUpdate" not in learner["spec"]["strategy"]
    for d in k8s_docs():
        if d["kind"] == "HorizontalPodAutoscaler":
            assert d["spec"]["scaleTargetRef"]["name"] != "bandit-learner"
        if d["kind"] == "PodDisruptionBudget":
            labels = pod_spec_labels(learner)
            assert not selects(d["spec"]["selector"]["matchLabels"], labels)


def pod_spec_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_port(container: dict[str, Any], port: int | str) -> int:
    """Resolve a probe or Service port (number or name) to the container's port."""
    ports = container["ports"]
    if isinstance(port, int):
        assert port in [p["containerPort"] for p in ports], f"port {port} not declared"
        return port
    named = [p["containerPort"] for p in ports if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return int(named[0])


def server_container() -> dict[str, Any]:
    cs = pod_spec(k8s_find("StatefulSet", "bandit-server"))["containers"]
    assert len(cs) == 1
    c: dict[str, Any] = cs[0]
    return c


def test_server_statefulset_shape() -> None:
    sts = k8s_find("StatefulSet", "bandit-server")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert selects(spec["selector"]["matchLabels"], pod_spec_labels(sts))
    headless = k8s_find("Service", spec["serviceName"])
    assert headless["spec"].get("clusterIP") == "None"
    templates = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
    assert "spool" in templates
    assert templates["spool"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert templates["spool"]["spec"]["resources"]["requests"]["storage"]


def test_server_probes_hit_the_health_routes_on_the_container_port() -> None:
    c = server_container()
    port = int(configmap_env()["BANDIT_PORT"])
    probes = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    if "startupProbe" in c:
        probes["startupProbe"] = "/healthz"
    for probe, path in probes.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{probe} should GET {path}"
        assert container_port(c, get["port"]) == port, f"{probe} port"


def test_server_resources_and_scrape_annotations() -> None:
    c = server_container()
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][bound]), f"resources.{bound}"
    annotations = k8s_find("StatefulSet", "bandit-server")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert container_port(c, int(annotations["prometheus.io/port"])) == int(
        configmap_env()["BANDIT_PORT"])


def test_server_and_learner_volumes() -> None:
    env = configmap_env()
    pvc = k8s_find("PersistentVolumeClaim", "bandit-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for kind, name, writes in (("StatefulSet", "bandit-server", False),
                               ("Deployment", "bandit-learner", True)):
        spec = pod_spec(k8s_find(kind, name))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        models = mounts[env["BANDIT_MODEL_DIR"]]
        assert volumes[models["name"]]["persistentVolumeClaim"]["claimName"] == "bandit-models"
        assert bool(models.get("readOnly")) is not writes, f"{name}: models mount mode"
    server_mounts = {m["mountPath"]: m["name"] for m in server_container()["volumeMounts"]}
    assert server_mounts[env["BANDIT_SPOOL_DIR"]] == "spool"
    server_volumes = {v["name"] for v in pod_spec(k8s_find("StatefulSet", "bandit-server"))
                      .get("volumes", [])}
    assert "spool" not in server_volumes, "spool must come from the volumeClaimTemplates"


def test_server_budget_ledger_is_on_a_writable_volume_of_its_pod() -> None:
    # the model store is mounted read-only in the server pods (and shared by them all):
    # the daily budgets' ledger goes on the pod's own volume, where its workers share it
    env = configmap_env()
    settings = Settings.from_env(env)
    ledger = settings.budget_ledger_path(settings.model_dir)
    assert ledger is not None
    mounts = server_container()["volumeMounts"]
    under = [m for m in mounts if ledger.is_relative_to(m["mountPath"])]
    assert under, f"{ledger} is on the pod's read-only root filesystem"
    mount = max(under, key=lambda m: len(m["mountPath"]))
    assert not mount.get("readOnly"), f"{ledger} is on the read-only mount {mount['name']}"
    assert mount["name"] == "spool"  # the pod's own claim, kept across restarts
    # a file in the spool root, not a directory the shipper would take for a spool
    assert ledger.parent == Path(env["BANDIT_SPOOL_DIR"])


def test_pods_run_as_non_root() -> None:
    for kind, name in (("StatefulSet", "bandit-server"), ("Deployment", "bandit-learner")):
        spec = pod_spec(k8s_find(kind, name))
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0


def test_services_reach_the_server_port() -> None:
    c = server_container()
    labels = pod_spec_labels(k8s_find("StatefulSet", "bandit-server"))
    for name in ("bandit-server", "bandit-server-headless"):
        svc = k8s_find("Service", name)
        assert selects(svc["spec"]["selector"], labels), f"{name} selects no server pod"
        for p in svc["spec"]["ports"]:
            assert container_port(c, p.get("targetPort", p["port"])) == 8080


def test_pdb_and_hpa_target_the_server() -> None:
    sts = k8s_find("StatefulSet", "bandit-server")
    pdb = k8s_find("PodDisruptionBudget", "bandit-server")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_spec_labels(sts))
    assert ("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"])
    hpa = k8s_find("HorizontalPodAutoscaler", "bandit-server")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": "bandit-server"}
    assert hpa["minReplicas"] <= sts["spec"]["replicas"] <= hpa["maxReplicas"]
    cpu = [m for m in hpa["metrics"]
           if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100


# -- Dockerfile ---------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    lines: list[str] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends in a line continuation"
    out = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = dockerfile_instructions()
    last_from = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    return ins[last_from:]


def test_dockerfile_base_user_port_and_command() -> None:
    ins = dockerfile_instructions()
    for keyword, args in ins:
        if keyword == "FROM":
            assert args.split()[0] == "python:3.11-slim"
    stage = final_stage()
    users = [args for k, args in stage if k == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(k == "EXPOSE" and "8080" in args.split() for k, args in stage)
    cmds = [args for k, args in stage if k == "CMD"]
    assert cmds and json.loads(cmds[-1]) == ["bandit-serve"]
    assert "bandit-serve" in console_scripts()


def test_dockerfile_installs_the_project() -> None:
    ins = dockerfile_instructions()
    runs = " ".join(args for k, args in ins if k == "RUN")
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), "no `pip install .`"
    copied = set()
    for keyword, args in ins:
        if keyword == "COPY" and "--from" not in args:
            *sources, _dest = args.split()
            copied |= set(sources)
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "bandit", "replay"):
        assert needed in copied, f"the build does not copy {needed}"
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    ignore = DEPLOY / "Dockerfile.dockerignore"
    if ignore.exists():
        patterns = [p.strip() for p in ignore.read_text(encoding="utf-8").splitlines()
                    if p.strip() and not p.startswith("#")]
        for source in copied:
            for pattern in patterns:
                assert not fnmatch.fnmatch(source, pattern), f"{source} is ignored by {pattern}"


def test_dockerfile_healthcheck_uses_python_on_healthz() -> None:
    checks = [args for k, args in final_stage() if k == "HEALTHCHECK"]
    assert len(checks) == 1
    exec_form = checks[0][checks[0].index("CMD") + 3:].strip()
    argv = json.loads(exec_form)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")  # the snippet must be valid Python
    assert "/healthz" in argv[2]
    assert "curl" not in checks[0]


def test_dockerfile_env_names_are_settings() -> None:
    names = settings_env_names()
    env_args = " ".join(args for k, args in dockerfile_instructions() if k == "ENV")
    set_vars = re.findall(r"(BANDIT_\w+)=", env_args)
    assert set_vars
    assert set(set_vars) <= names, f"unknown: {sorted(set(set_vars) - names)}"
    assert "BANDIT_HOST=0.0.0.0" in env_args


# -- docker compose -----------------------------------------------------------------------

def test_compose_bandit_services_use_only_valid_settings() -> None:
    services = bandit_compose_services()
    assert set(services) == {"server", "learner"}
    names = settings_env_names()
    for name, svc in services.items():
        env = compose_env(svc)
        assert set(env) <= names, f"{name}: {sorted(set(env) - names)} are not settings"
        missing = REQUIRED_ENV - {"BANDIT_WORKERS"} - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        Settings.from_env(env)


def test_compose_commands() -> None:
    services = bandit_compose_services()
    scripts = console_scripts()
    assert compose_command(services["server"])[:1] in ([], ["bandit-serve"])
    assert compose_command(services["learner"])[0] == "bandit-learn"
    for svc in services.values():
        for word in compose_command(svc)[:1]:
            assert word in scripts
    assert compose_env(services["server"])["BANDIT_WORKERS"] == "2"
    assert "deploy" not in compose()["services"]["learner"]


def test_compose_server_and_learner_share_the_models_volume() -> None:
    services = bandit_compose_services()
    top_volumes = compose().get("volumes") or {}
    sources = []
    for name in ("server", "learner"):
        model_dir = compose_env(services[name])["BANDIT_MODEL_DIR"]
        source = volume_mounts(services[name]).get(model_dir)
        assert source, f"{name} mounts nothing on {model_dir}"
        sources.append(source)
    assert sources[0] == sources[1]
    assert sources[0] in top_volumes, "the model store is a named volume"


def test_compose_server_spool_is_a_named_volume() -> None:
    server = bandit_compose_services()["server"]
    spool = compose_env(server)["BANDIT_SPOOL_DIR"]
    source = volume_mounts(server).get(spool)
    assert source in (compose().get("volumes") or {}), "spool must be a named volume"
    assert source != volume_mounts(server)[compose_env(server)["BANDIT_MODEL_DIR"]]


def test_compose_kafka_is_kraft_and_the_bandit_services_point_at_it() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.7.0"
    env = compose_env(kafka)
    for var in ("KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_LISTENERS",
                "KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_LISTENER_NAMES",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"):
        assert env.get(var), f"kafka lacks {var}"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")) <= set(protocols)
    assert "healthcheck" in kafka
    for name, svc in bandit_compose_services().items():
        bootstrap = compose_env(svc)["BANDIT_KAFKA_BOOTSTRAP"]
        for server in bootstrap.split(","):
            host, port = server.rsplit(":", 1)
            assert host == "kafka", f"{name} bootstraps from {host}, not the kafka service"
            assert any(a.endswith(f"//kafka:{port}") for a in advertised), \
                f"{name}: kafka does not advertise kafka:{port}"
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_prometheus_and_grafana_mount_the_deploy_files() -> None:
    services = compose()["services"]
    prometheus = volume_mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    grafana = volume_mounts(services["grafana"])
    assert services["grafana"]["image"].startswith("grafana/grafana")
    assert grafana["/etc/grafana/provisioning"] == "./grafana/provisioning"
    for mounts in (prometheus, grafana):
        for source in mounts.values():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{source} does not exist"
    build = services["server"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile").resolve()


# -- Prometheus ---------------------------------------------------------------------------

def test_prometheus_scrapes_the_compose_server() -> None:
    config = load_one(DEPLOY / "prometheus" / "prometheus.yml")
    server = bandit_compose_services()["server"]
    port = compose_env(server)["BANDIT_PORT"]
    targets = [(job.get("metrics_path", "/metrics"), t)
               for job in config["scrape_configs"]
               for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert ("/metrics", f"server:{port}") in targets
    for _, target in targets:
        assert target.split(":")[0] in compose()["services"], f"{target}: no such service"


def test_prometheus_loads_the_alert_rules_it_is_given() -> None:
    config = load_one(DEPLOY / "prometheus" / "prometheus.yml")
    mounts = volume_mounts(compose()["services"]["prometheus"])
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()
        assert mounts[f"/etc/prometheus/{rule_file}"] == f"./prometheus/{rule_file}"


def alert_rules() -> list[dict[str, Any]]:
    doc = load_one(DEPLOY / "prometheus" / "alerts.yml")
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    assert rules
    for r in rules:
        assert r.get("alert") and r.get("expr"), r
        assert r["labels"]["severity"] in ("critical", "warning", "info")
        assert r["annotations"]["summary"]
    assert len({r["alert"] for r in rules}) == len(rules)


def test_alert_metrics_exist_and_are_bandit_metrics() -> None:
    exported = exported_metric_names()
    used: set[str] = set()
    for r in alert_rules():
        names = promql_metrics(r["expr"])
        assert names, f"{r['alert']}: no metric in its expression"
        for n in names:
            assert n.startswith("bandit_"), f"{r['alert']}: {n} is not a bandit_ metric"
            assert n in exported, f"{r['alert']}: the server exports no {n}"
        used |= names
    assert {"bandit_errors_total", "bandit_decide_seconds_bucket", "bandit_spool_depth"} <= used


def test_alert_thresholds() -> None:
    by_metric = {m: r for r in alert_rules() for m in promql_metrics(r["expr"])}
    latency = by_metric["bandit_decide_seconds_bucket"]["expr"]
    assert re.search(r"histogram_quantile\(\s*0\.99", latency)
    assert re.search(r">\s*0\.010?\b", latency), "p99 threshold is 10 ms"
    for r in alert_rules():
        # a quiet period brings no new model: absence of swaps must not page anyone
        if "bandit_model_swaps_total" in promql_metrics(r["expr"]):
            assert 'result="refused"' in r["expr"], r["alert"]
        assert "absent(" not in r["expr"]


# -- Grafana ------------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "dashboards" / "bandit.json").read_text(encoding="utf-8"))
    return doc


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_dashboard_panels_have_targets() -> None:
    d = dashboard()
    assert d["title"] and d["uid"]
    panels = d["panels"]
    assert len(panels) >= 5
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert p["title"] and p["targets"], f"panel {p.get('title')} has no targets"
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for t in p["targets"]:
            assert t["expr"].strip()


def test_dashboard_metrics_exist_and_are_bandit_metrics() -> None:
    exported = exported_metric_names()
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = promql_metrics(expr)
        assert names, f"no metric in {expr!r}"
        for n in names:
            assert n.startswith("bandit_") and n in exported, f"{n} in {expr!r}"
        used |= names
    assert {"bandit_decisions_total", "bandit_decide_seconds_bucket", "bandit_rewards_total",
            "bandit_model_swaps_total", "bandit_spool_depth"} <= used
    joined = " ".join(dashboard_exprs())
    assert re.search(r"histogram_quantile\(\s*0\.5\b", joined)
    assert re.search(r"histogram_quantile\(\s*0\.99\b", joined)


def test_grafana_provisioning_matches_compose_and_dashboard() -> None:
    sources = load_one(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    (ds,) = sources["datasources"]
    assert ds["type"] == "prometheus"
    host_port = ds["url"].split("//", 1)[1].rstrip("/")
    assert host_port.split(":")[0] in compose()["services"]
    uids = {t.get("datasource", p.get("datasource", {})).get("uid")
            for p in dashboard()["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    providers = load_one(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")
    paths = {p["options"]["path"] for p in providers["providers"]}
    grafana = volume_mounts(compose()["services"]["grafana"])
    assert any(grafana.get(path) == "./grafana/dashboards" for path in paths)
