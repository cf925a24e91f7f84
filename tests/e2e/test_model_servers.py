"""Real third-party model servers behind one gateway, each from its own venv.

The seed's FastAPI service (``http_json``, no health route), a BentoML service, MLServer with
mlserver-sklearn (Open Inference Protocol, profanity and wine) and ``mlflow models serve`` (a
shadow), next to a Turnout worker as the control. They load registry artifacts with plain
scikit-learn: Turnout is not installed in their venvs. Under ``CI=true`` none of this skips.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from model_workers import registry
from model_workers.train import load_dataset, load_wine_dataset
from router.cli import app as cli
from router.core.settings import Settings
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis, RedisTopology
from tests.conftest import (
    SAMPLE_ROWS,
    Gateway,
    GatewayFactory,
    WorkerFactory,
    requires_ci_tool,
    write_experiment,
)
from tests.servers import thirdparty
from tests.servers.thirdparty import Server
from tests.servers.venvs import SERVERS, ServerVenv, VenvBuildError, build

NAME, WINE = "servers-e2e", "servers-wine"
TOKEN = "s3cret"
SEED = "protocol: http_json, score: confidence, label: is_profane, labels: {true: 1, false: 0}"
REQUESTS = 400
VERSIONS = {"turnout": "v1", "seed": "v2", "bento": "v3", "mlserver": "v1", "mlflow": "v2"}
WINE_DATA = load_wine_dataset()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTopology]:
    """Third-party model servers are the subject here, not Redis: one instance is enough."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("servers-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def venvs() -> dict[str, ServerVenv]:
    built = {}
    for name in SERVERS:
        try:
            built[name] = build(name)
        except VenvBuildError as exc:
            requires_ci_tool(False, f"the {name} venv ({exc})")
    return built


@pytest.fixture(scope="module")
def servers(
    venvs: dict[str, ServerVenv], models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    work = tmp_path_factory.mktemp("servers")

    def artifact(model: str, version: str) -> Path:
        return models_dir / model / version / "model.joblib"

    started: dict[str, Server] = {}
    try:
        started["seed"] = thirdparty.seed_service(
            venvs["seed"], artifact("profanity", VERSIONS["seed"]), work / "seed"
        )
        started["bento"] = thirdparty.bentoml_service(
            venvs["bentoml"], artifact("profanity", VERSIONS["bento"]), work / "bento"
        )
        started["mlserver"] = thirdparty.mlserver(
            venvs["mlserver"],
            artifact("profanity", VERSIONS["mlserver"]),
            artifact("wine", "v1"),
            len(WINE_DATA.names),
            work / "mlserver",
        )
        model = thirdparty.mlflow_model(
            venvs["mlflow"], artifact("profanity", VERSIONS["mlflow"]), work / "mlflow"
        )
        started["mlflow"] = thirdparty.mlflow_serve(venvs["mlflow"], model, work / "mlflow")
        yield started
    finally:
        for server in started.values():
            server.stop()


def profanity_yaml(worker: str, servers: dict[str, Server], sample: bool = True) -> str:
    lines = [
        f"name: {NAME}",
        "model: profanity",
        "control: turnout",
        "variants:",
        f"  turnout: {{url: '{worker}', version: v1}}",
        f"  seed: {{url: '{servers['seed'].url}', version: v2, {SEED}, health: none}}",
        f"  bento: {{url: '{servers['bento'].url}', version: v3, protocol: bentoml}}",
        f"  mlserver: {{url: '{servers['mlserver'].url}', version: v1, protocol: open_inference,"
        " model: profanity}",
        f"  mlflow: {{url: '{servers['mlflow'].url}', version: v2, protocol: mlflow}}",
        "policy:",
        "  kind: canary",
        "  weights: {turnout: 40, seed: 20, bento: 20, mlserver: 20}",
        "  sticky: user_id",
        "shadow: {targets: [mlflow]}",
    ]
    if sample:
        lines.append("sample_input: {text: 'you are a stupid idiot'}")
    return "\n".join(lines) + "\n"


def wine_yaml(worker: str, mlserver: str) -> str:
    return "\n".join(
        [
            f"name: {WINE}",
            "model: wine",
            "control: turnout",
            "variants:",
            f"  turnout: {{url: '{worker}', version: v1}}",
            f"  mlserver: {{url: '{mlserver}', version: v1, protocol: open_inference,"
            " model: wine, score_output: predict_proba}",
            "input:",
            "  kind: features",
            f"  names: [{', '.join(WINE_DATA.names)}]",
            "policy: {kind: canary, weights: {turnout: 50, mlserver: 50}}",
            "",
        ]
    )


@pytest.fixture(scope="module")
def gateway(
    servers: dict[str, Server],
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(folder, profanity_yaml(start_worker("v1").url, servers), "profanity.yaml")
    wine_worker = start_worker("v1", model="wine").url
    write_experiment(folder, wine_yaml(wine_worker, servers["mlserver"].url), "wine.yaml")
    env = {
        **redis_server.env,
        "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
        "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
        "TURNOUT_ACCESS_LOG": "false",
        "TURNOUT_SHADOW_TIMEOUT": "5",
    }
    return start_gateway(folder, **env)


def texts(n: int) -> tuple[list[str], list[int]]:
    data = load_dataset(Settings().dataset, limit=SAMPLE_ROWS + n)
    return data.texts[SAMPLE_ROWS:], data.labels[SAMPLE_ROWS:]


# --- artifacts load outside Turnout -----------------------------------------------------------

LOAD_CHECK = """\
import json, sys
import joblib
out = {}
for name in ("model_workers", "router"):
    try:
        __import__(name)
        out[name] = "importable"
    except ModuleNotFoundError:
        out[name] = "absent"
args = json.loads(sys.argv[1])
for family, key, inputs in (("profanity", "text", "texts"), ("wine", "rows_at", "rows")):
    out[family] = {
        v: joblib.load(p).predict_proba(args[inputs]).tolist() for v, p in args[key].items()
    }
print(json.dumps(out))
"""


@pytest.mark.parametrize("server", SERVERS)
def test_registry_artifacts_load_in_plain_scikit_learn_venvs(
    server: str, venvs: dict[str, ServerVenv], models_dir: Path, tmp_path: Path
) -> None:
    sample, _ = texts(20)
    rows = WINE_DATA.rows[::30].tolist()
    args = {
        "texts": sample,
        "text": {v: str(models_dir / "profanity" / v / "model.joblib") for v in ("v1", "v2", "v3")},
        "rows": rows,
        "rows_at": {v: str(models_dir / "wine" / v / "model.joblib") for v in ("v1", "v2")},
    }
    venv = venvs[server]
    done = subprocess.run(
        [str(venv.python), "-c", LOAD_CHECK, json.dumps(args)],
        cwd=tmp_path,  # not the project folder: nothing of ours on the path
        env=venv.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["model_workers"] == out["router"] == "absent"
    for version, proba in out["profanity"].items():
        ours = registry.load(models_dir, "profanity", version).estimator.predict_proba(sample)
        np.testing.assert_allclose(proba, ours, rtol=0, atol=1e-12)
    for version, proba in out["wine"].items():
        ours = registry.load(models_dir, "wine", version).estimator.predict_proba(rows)
        np.testing.assert_allclose(proba, ours, rtol=0, atol=1e-12)


# --- each server through its adapter ----------------------------------------------------------


def forced(gateway: Gateway, variant: str, body: dict[str, Any], model: str) -> dict[str, Any]:
    headers = {"x-turnout-variant": variant, "authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{gateway.url}/models/{model}/predict", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["served_variant"] == variant and answer["fallback"] is False, answer
    return answer


@pytest.mark.parametrize("variant", ["turnout", "seed", "bento", "mlserver"])
def test_every_server_gives_the_same_normalized_answer_as_its_model(
    gateway: Gateway, variant: str, models_dir: Path
) -> None:
    sample = ["you are a stupid idiot", "what a lovely morning", "@bob rt this is trash lol"]
    model = registry.load(models_dir, "profanity", VERSIONS[variant])
    for text, expected in zip(sample, model.outputs(sample), strict=True):
        answer = forced(gateway, variant, {"text": text, "user_id": "probe"}, "profanity")
        assert answer["label"] == expected["label"]
        assert answer["score"] == pytest.approx(expected["score"], abs=1e-12)
        assert answer["model_version"] == VERSIONS[variant]
    shapes = {
        "turnout": {"label", "score", "is_profane", "model", "version"},
        "seed": {"is_profane", "confidence"},
        "bento": {"label", "score"},
        "mlserver": {"model_name", "id", "outputs", "model_version", "parameters"},
    }
    assert shapes[variant] <= set(answer["prediction"])  # the upstream's own answer, untouched


def test_wine_through_mlserver_matches_the_turnout_worker(gateway: Gateway) -> None:
    for index in range(0, len(WINE_DATA.labels), 25):
        features = dict(zip(WINE_DATA.names, WINE_DATA.rows[index].tolist(), strict=True))
        ours = forced(gateway, "turnout", {"features": features}, "wine")
        theirs = forced(gateway, "mlserver", {"features": features}, "wine")
        assert theirs["label"] == ours["label"] == WINE_DATA.labels[index]
        assert theirs["score"] == pytest.approx(ours["score"], abs=1e-12)


def test_experiments_show_protocols_and_readiness(gateway: Gateway) -> None:
    items = {e["name"]: e for e in httpx.get(f"{gateway.url}/experiments").json()["experiments"]}
    upstreams = items[NAME]["upstreams"]
    assert {v: u["protocol"] for v, u in upstreams.items()} == {
        "turnout": "turnout",
        "seed": "http_json",
        "bento": "bentoml",
        "mlserver": "open_inference",
        "mlflow": "mlflow",
    }
    assert all(u["ready"] for u in upstreams.values()), upstreams
    assert upstreams["seed"]["health"] == "passive"
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200


# --- one experiment across every server -------------------------------------------------------


def report(gateway: Gateway, path: str) -> dict[str, Any]:
    r = httpx.get(f"{gateway.url}/experiments/{NAME}/{path}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_one_experiment_splits_reports_and_shadows_across_every_server(gateway: Gateway) -> None:
    sample, truth = texts(REQUESTS)
    before = {r["variant"]: r["assigned"] for r in report(gateway, "report")["variants"]}
    answered: list[tuple[str, int]] = []
    with httpx.Client(timeout=30) as client:
        for i, text in enumerate(sample):
            r = client.post(
                f"{gateway.url}/models/profanity/predict",
                json={"text": text, "user_id": f"user-{i}"},
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["fallback"] is False, body
            answered.append((body["request_id"], truth[i]))
        for request_id, label in answered:
            fb = client.post(
                f"{gateway.url}/feedback", json={"request_id": request_id, "label": label}
            )
            assert fb.status_code == 200, fb.text

    def settled() -> bool:
        rows = report(gateway, "report")["variants"]
        pairs = report(gateway, "shadow")["pairs"]
        labelled = sum(r["feedback"]["labelled"] for r in rows)
        compared = sum(p["pairs"] + p["shadow_errors"] + p["shadow_dropped"] for p in pairs)
        return labelled >= REQUESTS and compared >= REQUESTS

    poll_until(settled, 60, what="feedback and shadow comparisons")
    full = report(gateway, "report")
    rows = {r["variant"]: r for r in full["variants"]}
    weights = {"turnout": 40, "seed": 20, "bento": 20, "mlserver": 20}
    for variant, weight in weights.items():
        row = rows[variant]
        assigned = row["assigned"] - before.get(variant, 0)
        assert abs(assigned / REQUESTS - weight / 100) < 0.08, (variant, assigned)
        assert row["errors"] == 0 and row["fallbacks"] == 0
        assert row["version"] == VERSIONS[variant]
        assert row["feedback"]["accuracy"] is not None and row["feedback"]["accuracy"] > 0.7, row
        assert set(row["labels"]) <= {"0", "1"}
    assert full["srm"]["checked"] and not full["srm"]["mismatch"], full["srm"]
    pairs = {(p["primary"], p["shadow"]): p for p in report(gateway, "shadow")["pairs"]}
    assert set(pairs) == {(v, "mlflow") for v in weights}
    for (primary, _), pair in pairs.items():
        assert pair["pairs"] > 0 and pair["shadow_errors"] == 0, pair
        assert pair["agreement"] is not None and pair["mcnemar"] is not None
        assert set(pair["confusion"]) <= {"0", "1"}
        assert pair["labelled_feedback"]["n"] > 0
        if primary == "seed":  # the same v2 artifact behind two servers agrees everywhere
            assert pair["agreement"] == 1.0


# --- operators: validate --probe against the real servers -------------------------------------


def test_validate_probe_prints_every_versions_label_and_score(
    gateway: Gateway, tmp_path: Path
) -> None:
    source = (gateway.experiments_dir / "profanity.yaml").read_text()
    path = tmp_path / "profanity.yaml"
    path.write_text(source)
    result = CliRunner().invoke(cli, ["validate", str(path), "--probe"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for variant in VERSIONS:
        assert f"probe {variant} (" in result.output
    assert "failed" not in result.output
    assert "passive health" in result.output  # the seed service has no health route

    broken = source.replace("score: confidence", "score: confidense")
    path.write_text(broken)
    result = CliRunner().invoke(cli, ["validate", str(path), "--probe"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "probe seed (http_json, version v2): failed bad answer (missing_field)" in result.output
