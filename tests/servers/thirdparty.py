"""Start third-party model servers the way their users do, each from its own venv.

Every server loads a registry artifact (``model.joblib``) with plain joblib and scikit-learn:
nothing of Turnout is installed in those venvs or on their import path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from tests.servers.venvs import ServerVenv

SEED_SERVICE = '''\
"""The seed's service: the plain FastAPI app from the blog post this project started from."""
import os

import joblib
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ["MODEL_PATH"])
app = FastAPI()


class Tweet(BaseModel):
    text: str


@app.post("/predict")
def predict(tweet: Tweet) -> dict:
    proba = float(model.predict_proba([tweet.text])[0][1])
    return {"is_profane": proba >= 0.5, "confidence": proba}
'''

BENTO_SERVICE = '''\
"""A BentoML 1.x service around a registry artifact."""
import os

import bentoml
import joblib


@bentoml.service
class Profanity:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["MODEL_PATH"])

    @bentoml.api
    def predict(self, text: str) -> dict:
        proba = float(self.model.predict_proba([text])[0][1])
        return {"label": int(proba >= 0.5), "score": proba}
'''

MLFLOW_SAVE = """\
import sys

import joblib
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature

model = joblib.load(sys.argv[1])
texts = ["hello there", "you stupid idiot"]
signature = infer_signature(np.array(texts), model.predict_proba(texts))
mlflow.sklearn.save_model(
    model, sys.argv[2], signature=signature, pyfunc_predict_fn="predict_proba",
    serialization_format="pickle",
)
"""


MLFLOW_FLAGS = ("--env-manager", "local", "-w", "1")


def bind(host_flag: str, port_flag: str, port: int) -> list[str]:
    return [host_flag, "127.0.0.1", port_flag, str(port)]


@dataclass
class Server:
    name: str
    url: str
    process: ManagedProcess

    def stop(self) -> None:
        self.process.stop()


def _wait(server: Server, ready: str, timeout: float = 120.0) -> Server:
    process = server.process

    def up() -> bool:
        if not process.alive():
            return True
        if ready.startswith("POST "):
            r = httpx.post(server.url + ready[5:], json={"text": "warm up"}, timeout=2)
            return r.status_code == 200
        return http_ok(server.url + ready)

    poll_until(up, timeout, 0.2, what=f"{server.name} to be ready")
    assert process.alive(), f"{server.name} exited:\n{process.output()[-3000:]}"
    return server


def seed_service(venv: ServerVenv, artifact: Path, workdir: Path) -> Server:
    """``uvicorn service:app``: no health route at all (the gateway must use passive health)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "service.py").write_text(SEED_SERVICE)
    port = free_port()
    process = ManagedProcess(
        "seed",
        [str(venv.bin / "uvicorn"), "service:app", "--host", "127.0.0.1", "--port", str(port)],
        env=venv.env(MODEL_PATH=str(artifact)),
        log_path=workdir / "seed.log",
        cwd=workdir,
    ).start()
    return _wait(Server("seed", f"http://127.0.0.1:{port}", process), "POST /predict")


def bentoml_service(venv: ServerVenv, artifact: Path, workdir: Path) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "service.py").write_text(BENTO_SERVICE)
    port = free_port()
    env = venv.env(
        MODEL_PATH=str(artifact),
        BENTOML_HOME=str(workdir / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="true",
    )
    process = ManagedProcess(
        "bentoml",
        [
            str(venv.bin / "bentoml"),
            "serve",
            "service:Profanity",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        log_path=workdir / "bentoml.log",
        cwd=workdir,
    ).start()
    return _wait(Server("bentoml", f"http://127.0.0.1:{port}", process), "/readyz")


def _model_settings(name: str, version: str, inputs: dict[str, object], classes: int) -> str:
    return json.dumps(
        {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": version},
            "inputs": [inputs],
            "outputs": [{"name": "predict_proba", "datatype": "FP64", "shape": [-1, classes]}],
        }
    )


def mlserver(
    venv: ServerVenv, profanity: Path, wine: Path, wine_features: int, workdir: Path
) -> Server:
    """``mlserver start`` with mlserver-sklearn serving a profanity and a wine artifact."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, grpc, metrics = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": 0,  # the default worker pool crashes under uvloop 0.23
    }
    (workdir / "settings.json").write_text(json.dumps(settings))
    text_input = {
        "name": "text",
        "datatype": "BYTES",
        "shape": [-1],
        "parameters": {"content_type": "str"},
    }
    for name, artifact, inputs, classes in (
        ("profanity", profanity, text_input, 2),
        ("wine", wine, {"name": "features", "datatype": "FP64", "shape": [-1, wine_features]}, 3),
    ):
        folder = workdir / name
        folder.mkdir(exist_ok=True)
        shutil.copy(artifact, folder / "model.joblib")
        (folder / "model-settings.json").write_text(_model_settings(name, "v1", inputs, classes))
    process = ManagedProcess(
        "mlserver",
        [str(venv.bin / "mlserver"), "start", "."],
        env=venv.env(),
        log_path=workdir / "mlserver.log",
        cwd=workdir,
    ).start()
    server = _wait(Server("mlserver", f"http://127.0.0.1:{port}", process), "/v2/health/ready")
    for name in ("profanity", "wine"):
        poll_until(lambda n=name: http_ok(f"{server.url}/v2/models/{n}/ready"), 60, what=name)
    return server


def mlflow_model(venv: ServerVenv, artifact: Path, workdir: Path) -> Path:
    """An ``mlflow.sklearn`` model of a registry artifact, answering class probabilities."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "save.py").write_text(MLFLOW_SAVE)
    target = workdir / "mlflow-model"
    done = subprocess.run(
        [str(venv.python), "save.py", str(artifact), str(target)],
        cwd=workdir,
        env=venv.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def mlflow_serve(venv: ServerVenv, model: Path, workdir: Path) -> Server:
    port = free_port()
    process = ManagedProcess(
        "mlflow",
        [
            str(venv.bin / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        env=venv.env(MLFLOW_TRACKING_URI=f"file://{workdir / 'mlruns'}"),
        log_path=workdir / "mlflow.log",
        cwd=workdir,
    ).start()
    return _wait(Server("mlflow", f"http://127.0.0.1:{port}", process), "/ping")
