"""Protocols: the same model served directly and through the gateway, per protocol, in one run.

For each protocol (turnout, http_json, bentoml, open_inference, mlflow) the profanity v1 artifact
is served by its real server (a Turnout worker, the seed's FastAPI service, BentoML, MLServer,
MLflow; third-party ones from their test venvs) and loaded straight and through one gateway
(recording on) at concurrency 1 (added p50/p99 latency) and 32 (throughput ratio). Then each
adapter's encode + decode cost per request, in process, on a real answer of its server.
Goals: encode + decode <= 50 us; the gateway's added latency per protocol within 10% of the
``turnout`` protocol's. Prints figures, not pass/fail; the same load generator (Python, in its
own process, one fixed body) drives every leg, so legs compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    ROOT,
    leg_arguments,
    median,
    models_env,
    start_gateway,
    start_worker,
)
from router.config.loader import parse_experiment
from router.local.redis_server import EmbeddedRedis
from router.upstream.protocols import Payload, build_adapter
from tests.servers import thirdparty
from tests.servers.venvs import SERVERS, build

TEXT = "rt @someone: you are such a stupid idiot lol"
PROTOCOLS = ("turnout", "http_json", "bentoml", "open_inference", "mlflow")
SETTINGS = {
    "turnout": "",
    "http_json": ", protocol: http_json, score: confidence, label: is_profane, "
    "labels: {true: 1, false: 0}, health: none",
    "bentoml": ", protocol: bentoml",
    "open_inference": ", protocol: open_inference, model: profanity",
    "mlflow": ", protocol: mlflow",
}


def experiment(protocol: str, url: str) -> str:
    return (
        f"name: bench-{protocol.replace('_', '-')}\nmodel: {protocol}\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{url}'{SETTINGS[protocol]}}}\n"
        "policy: {kind: blue_green, active: v1}\n"
    )


def direct_body(protocol: str) -> dict[str, Any]:
    if protocol == "open_inference":
        return {
            "id": "bench",
            "inputs": [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [TEXT],
                    "parameters": {"content_type": "str"},
                }
            ],
            "outputs": [{"name": "predict_proba"}],
        }
    if protocol == "mlflow":
        return {"inputs": [TEXT]}
    return {"text": TEXT}


def direct_path(protocol: str) -> str:
    return {
        "open_inference": "/v2/models/profanity/infer",
        "mlflow": "/invocations",
    }.get(protocol, "/predict")


def leg(url: str, body: Path, concurrency: int, duration: float) -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "benchmarks" / "loadgen.py"), url, "--body", str(body)]
    argv += ["--concurrency", str(concurrency), "--duration", str(duration)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def adapter_cost(text: str, url: str, iterations: int = 20_000) -> float:
    """Microseconds per request of encode + decode, on a real answer of the server."""
    variant = parse_experiment(text, Path("bench.yaml")).experiment.variants["v1"]
    adapter = build_adapter(variant.protocol, variant.settings())
    payload = Payload("text", text=TEXT)
    if variant.protocol == "open_inference":  # learn input and outputs from the metadata
        meta = httpx.get(f"{url}/v2/models/profanity", timeout=5).content
        adapter.learn(meta)  # type: ignore[attr-defined]
    call = adapter.encode(payload, "bench-1")
    headers = {"content-type": "application/json"}
    answer = httpx.post(url + call.path, content=call.body, headers=headers, timeout=10).content
    adapter.decode(answer, "bench-1")
    started = time.perf_counter()
    for _ in range(iterations):
        adapter.encode(payload, "bench-1")
        adapter.decode(answer, "bench-1")
    return (time.perf_counter() - started) / iterations * 1e6


def main() -> None:
    args = leg_arguments(__doc__)
    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-protocols-"))
    models = Path(models_env()["TURNOUT_MODELS_DIR"])
    artifact = models / "profanity" / "v1" / "model.joblib"
    venvs = {name: build(name) for name in SERVERS}
    redis = EmbeddedRedis(workdir / "redis").start()
    env = {**models_env(), "TURNOUT_REDIS_URL": redis.url}
    servers: list[Any] = []
    try:
        worker = start_worker("v1", env)
        servers.append(worker.process)
        seed = thirdparty.seed_service(venvs["seed"], artifact, workdir / "seed")
        bento = thirdparty.bentoml_service(venvs["bentoml"], artifact, workdir / "bento")
        wine = models / "wine" / "v1" / "model.joblib"
        mls = thirdparty.mlserver(venvs["mlserver"], artifact, wine, 13, workdir / "mlserver")
        saved = thirdparty.mlflow_model(venvs["mlflow"], artifact, workdir / "mlflow")
        mlf = thirdparty.mlflow_serve(venvs["mlflow"], saved, workdir / "mlflow")
        servers += [s.process for s in (seed, bento, mls, mlf)]
        urls = dict(
            zip(PROTOCOLS, (worker.url, seed.url, bento.url, mls.url, mlf.url), strict=True)
        )
        folder = workdir / "experiments"
        folder.mkdir()
        for protocol, url in urls.items():
            (folder / f"{protocol}.yaml").write_text(experiment(protocol, url))
        gateway = start_gateway(folder, env)
        servers.append(gateway.process)
        bodies = {}
        for protocol in PROTOCOLS:
            direct = workdir / f"{protocol}-direct.json"
            direct.write_text(json.dumps(direct_body(protocol)))
            through = workdir / f"{protocol}-gateway.json"
            through.write_text(json.dumps({"text": TEXT, "user_id": "bench"}))
            bodies[protocol] = (direct, through)

        rows = {}
        for protocol in PROTOCOLS:
            direct_url = urls[protocol] + direct_path(protocol)
            gateway_url = f"{gateway.url}/models/{protocol}/predict"
            direct_body_file, gateway_body_file = bodies[protocol]
            leg(direct_url, direct_body_file, 4, 1.0)  # warm both paths
            leg(gateway_url, gateway_body_file, 4, 1.0)
            lat_d, lat_g, thr_d, thr_g = [], [], [], []
            for _ in range(args.repeats):
                lat_d.append(leg(direct_url, direct_body_file, 1, args.duration))
                lat_g.append(leg(gateway_url, gateway_body_file, 1, args.duration))
                thr_d.append(leg(direct_url, direct_body_file, args.concurrency, args.duration))
                thr_g.append(leg(gateway_url, gateway_body_file, args.concurrency, args.duration))
            rows[protocol] = {
                "codec_us": adapter_cost(experiment(protocol, urls[protocol]), urls[protocol]),
                "direct_p50": median([r["p50_ms"] for r in lat_d]),
                "direct_p99": median([r["p99_ms"] for r in lat_d]),
                "added_p50": median([r["p50_ms"] for r in lat_g])
                - median([r["p50_ms"] for r in lat_d]),
                "added_p99": median([r["p99_ms"] for r in lat_g])
                - median([r["p99_ms"] for r in lat_d]),
                "direct_rps": median([r["rps"] for r in thr_d]),
                "gateway_rps": median([r["rps"] for r in thr_g]),
                "errors_direct": sum(r["errors"] for r in lat_d + thr_d),
                "errors_gateway": sum(r["errors"] for r in lat_g + thr_g),
            }
        base = rows["turnout"]["added_p50"]
        print(
            f"protocols: profanity v1 behind each server, direct vs gateway (recording on); "
            f"c=1 and c={args.concurrency}, {args.repeats} x {args.duration:g} s legs, medians"
        )
        print(
            f"  {'protocol':<15}{'enc+dec us':>11}{'direct p50':>12}{'added p50':>11}"
            f"{'added p99':>11}{'direct rps':>12}{'gw rps':>9}{'gw/direct':>11}{'vs turnout':>12}"
            f"{'errors d/gw':>13}"
        )
        for protocol, r in rows.items():
            ratio = r["gateway_rps"] / r["direct_rps"] if r["direct_rps"] else float("nan")
            versus = r["added_p50"] / base if base > 0 else float("nan")
            print(
                f"  {protocol:<15}{r['codec_us']:>11.1f}{r['direct_p50']:>10.2f}ms"
                f"{r['added_p50']:>9.2f}ms{r['added_p99']:>9.2f}ms{r['direct_rps']:>12.1f}"
                f"{r['gateway_rps']:>9.1f}{ratio:>11.2f}{versus:>11.2f}x"
                f"{r['errors_direct']:>7d}/{r['errors_gateway']:<5d}"
            )
        print("  goals: enc+dec <= 50 us; added p50 per protocol within 10% of turnout's (1.10x)")
    finally:
        for process in reversed(servers):
            process.stop()
        redis.stop()


if __name__ == "__main__":
    main()
