"""A second model family through one gateway: wine (13 named features, 3 classes) next to
profanity (text), k-class reports and confusion tables, and the Open Inference front door
driven by a real ``tritonclient`` (a client nobody here wrote)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from model_workers.train import load_wine_dataset
from router.local.processes import poll_until
from router.local.redis_server import RedisTopology
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, write_experiment

RUN = uuid.uuid4().hex[:6]
WINE, PROFANITY = f"wine-{RUN}", f"profanity-{RUN}"
DATA = load_wine_dataset()
NAMES = DATA.names


def wine_yaml(workers: dict[str, str]) -> str:
    return "\n".join(
        [
            f"name: {WINE}",
            "model: wine",
            "control: v1",
            "variants:",
            f"  v1: {{url: '{workers['v1']}'}}",
            f"  v2: {{url: '{workers['v2']}'}}",
            "input:",
            "  kind: features",
            f"  names: [{', '.join(NAMES)}]",
            "policy: {kind: canary, weights: {v1: 70, v2: 30}, sticky: user_id}",
            "shadow: {targets: [v2]}",
            "",
        ]
    )


@pytest.fixture(scope="module")
def gateway(
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    wine = {v: start_worker(v, model="wine").url for v in ("v1", "v2")}
    text = start_worker("v1").url
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(folder, wine_yaml(wine), "wine.yaml")
    write_experiment(
        folder,
        f"name: {PROFANITY}\nmodel: profanity\ncontrol: v1\nvariants:\n  v1: {{url: '{text}'}}\n"
        "policy: {kind: blue_green, active: v1}\n",
        "profanity.yaml",
    )
    env = {
        **redis_server.env,
        "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
        "TURNOUT_ACCESS_LOG": "false",
        "TURNOUT_SEED": "3",
    }
    return start_gateway(folder, **env)


def row(index: int) -> dict[str, float]:
    return dict(zip(NAMES, DATA.rows[index].tolist(), strict=True))


def predict_wine(
    gateway: Gateway, body: dict[str, Any], raw: bytes | None = None
) -> httpx.Response:
    url = f"{gateway.url}/models/wine/predict"
    if raw is not None:
        return httpx.post(url, content=raw, headers={"content-type": "application/json"})
    return httpx.post(url, json=body, timeout=10)


def test_wine_answers_named_features_with_three_class_labels(gateway: Gateway) -> None:
    r = predict_wine(gateway, {"features": row(0), "user_id": "u1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "wine" and body["experiment"] == WINE
    assert body["label"] == 0 and body["score"] == max(body["prediction"]["probabilities"])
    assert body["prediction"]["class_name"] == "class_0"
    text = httpx.post(f"{gateway.url}/models/profanity/predict", json={"text": "hello"})
    assert text.status_code == 200 and text.json()["label"] in (0, 1)
    both = httpx.post(f"{gateway.url}/predict", json={"text": "hello"})
    assert both.status_code == 422 and "profanity, wine" in both.json()["detail"]


BAD_FEATURES = {
    "missing": ({k: v for k, v in row(0).items() if k != "hue"}, "'features.hue'"),
    "unknown": ({**row(0), "colour": 3.0}, "'features.colour'"),
    "wrong type": ({**row(0), "hue": "pale"}, "'features.hue' must be a number, got str"),
    "boolean": ({**row(0), "proline": True}, "'features.proline' must be a number, got bool"),
    "null": ({**row(0), "ash": None}, "'features.ash' is required"),
}


@pytest.mark.parametrize("case", list(BAD_FEATURES))
def test_bad_features_get_a_422_naming_the_field(gateway: Gateway, case: str) -> None:
    features, reason = BAD_FEATURES[case]
    r = predict_wine(gateway, {"features": features})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_input" and reason in r.json()["detail"]


def test_a_non_finite_feature_gets_a_422_naming_the_field(gateway: Gateway) -> None:
    raw = json.dumps({"features": {**row(0), "alcohol": float("nan")}}).encode()
    assert b"NaN" in raw  # what Python's json writes
    r = predict_wine(gateway, {}, raw)
    assert r.status_code == 422, r.text
    assert "'features.alcohol' must be a finite number" in r.json()["detail"]
    huge = predict_wine(gateway, {}, raw.replace(b"NaN", b"1e999"))
    assert huge.status_code == 422 and "'features.alcohol'" in huge.json()["detail"]


def test_text_sent_to_a_features_model_is_refused(gateway: Gateway) -> None:
    r = predict_wine(gateway, {"text": "a red wine"})
    assert r.status_code == 422 and "'features' is required" in r.json()["detail"]
    r = predict_wine(gateway, {"features": list(row(0).values())})
    assert r.status_code == 422 and "'features' must be a JSON object" in r.json()["detail"]


def report(gateway: Gateway, path: str = "report") -> dict[str, Any]:
    r = httpx.get(f"{gateway.url}/experiments/{WINE}/{path}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_k_class_report_and_confusion_tables_from_feedback(gateway: Gateway) -> None:
    answered = []
    with httpx.Client(timeout=10) as client:
        for i in range(len(DATA.labels)):
            body = {"features": row(i), "user_id": f"taster-{i}"}
            r = client.post(f"{gateway.url}/models/wine/predict", json=body)
            assert r.status_code == 200, r.text
            answered.append((r.json()["request_id"], DATA.labels[i]))
        for request_id, truth in answered:
            fb = client.post(
                f"{gateway.url}/feedback", json={"request_id": request_id, "label": truth}
            )
            assert fb.status_code == 200, fb.text

    def credited() -> bool:
        rows = report(gateway)["variants"]
        return sum(r["feedback"]["labelled"] for r in rows) >= len(answered)

    poll_until(credited, 20, what="feedback in the report")
    rows = {r["variant"]: r for r in report(gateway)["variants"]}
    for name in ("v1", "v2"):
        fb = rows[name]["feedback"]
        assert set(rows[name]["labels"]) <= {"0", "1", "2"}
        assert set(fb["confusion"]) <= {"0", "1", "2"}
        assert sum(sum(r.values()) for r in fb["confusion"].values()) == fb["labelled"]
        assert set(fb["classes"]) == {"0", "1", "2"}
        assert fb["accuracy"] > 0.85, fb
        assert all(c["recall"] is not None for c in fb["classes"].values())
    assert rows["v1"]["feedback"]["labelled"] + rows["v2"]["feedback"]["labelled"] >= len(answered)

    def compared() -> bool:
        pairs = report(gateway, "shadow")["pairs"]
        return bool(pairs) and pairs[0]["pairs"] > 50

    poll_until(compared, 20, what="shadow comparisons")
    (pair,) = report(gateway, "shadow")["pairs"]
    assert (pair["primary"], pair["shadow"]) == ("v1", "v2")
    assert set(pair["confusion"]) <= {"0", "1", "2"}
    assert pair["mcnemar"]["method"] in ("bowker", "exact", "chi2")
    assert pair["agreement"] > 0.8
    assert pair["labelled_feedback"]["n"] > 0


# --- the Open Inference Protocol front door, with a real tritonclient ---------------------


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=gateway.url.removeprefix("http://"))


def outputs() -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "score")]


def test_tritonclient_sees_a_live_ready_server_and_models(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("wine") and client.is_model_ready("profanity")
    meta = client.get_model_metadata("wine")
    assert meta["inputs"][0]["shape"] == [1, 13]
    assert {o["name"] for o in meta["outputs"]} == {"label", "score"}
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("no-such-model")


def test_tritonclient_infers_text_with_a_user_key(
    client: triton.InferenceServerClient, gateway: Gateway
) -> None:
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["you stupid idiot"], dtype=object), binary_data=False)
    result = client.infer(
        "profanity", [text], outputs=outputs(), request_id="mine-1", parameters={"user_id": "u7"}
    )
    response = result.get_response()
    assert response["id"] == "mine-1" and response["model_name"] == "profanity"
    assert response["parameters"]["experiment"] == PROFANITY
    assert int(result.as_numpy("label")[0]) in (0, 1)
    assert 0.0 <= float(result.as_numpy("score")[0]) <= 1.0
    upstream = json.loads(response["parameters"]["prediction"])
    assert upstream["label"] == int(result.as_numpy("label")[0])
    request_id = response["parameters"]["request_id"]
    fb = httpx.post(f"{gateway.url}/feedback", json={"request_id": request_id, "reward": 1})
    assert fb.status_code == 200, fb.text  # recorded like any other request


def test_tritonclient_infers_wine_features_as_one_row(client: triton.InferenceServerClient) -> None:
    features = triton.InferInput("features", [1, 13], "FP64")
    features.set_data_from_numpy(DATA.rows[100:101], binary_data=False)
    result = client.infer("wine", [features], outputs=outputs())
    assert int(result.as_numpy("label")[0]) == DATA.labels[100]
    params = result.get_response()["parameters"]
    assert params["variant"] in ("v1", "v2") and params["config_version"]


def test_tritonclient_gets_the_gateways_refusals(client: triton.InferenceServerClient) -> None:
    short = triton.InferInput("features", [1, 12], "FP64")
    short.set_data_from_numpy(DATA.rows[0:1, :12], binary_data=False)
    with pytest.raises(InferenceServerException, match="invalid_input"):
        client.infer("wine", [short], outputs=outputs())
    binary = triton.InferInput("text", [1], "BYTES")
    binary.set_data_from_numpy(np.array(["hi"], dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException, match="unsupported_binary"):
        client.infer("profanity", [binary], outputs=outputs())
    with pytest.raises(InferenceServerException, match="unknown_model"):
        client.infer("no-such-model", [short])


def test_open_inference_bad_bodies_get_clear_4xx(gateway: Gateway) -> None:
    url = f"{gateway.url}/v2/models/wine/infer"
    cases = [
        ({"inputs": []}, "'inputs' must be a non-empty list"),
        ({"inputs": [{"name": "x", "shape": [1]}]}, "needs a 'datatype'"),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 13], "datatype": "FP64", "data": [1.0] * 13}],
                "outputs": [{"name": "proba"}],
            },
            "unknown outputs",
        ),
        (
            {"inputs": [{"name": "alcohol", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
            "features",
        ),
    ]
    for body, reason in cases:
        r = httpx.post(url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert reason in r.json()["detail"], r.json()


def wine_tensor(shape: Any, data: Any, datatype: str = "FP64") -> dict[str, Any]:
    return {"inputs": [{"name": "features", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ([1_000_000_000], "holds 13 values"),
        ([-1, -5], "non-negative"),
        ("huge", "list of integers"),
        ([1] * 100_000, "dimensions"),
        ([1, 13.0], "list of integers"),
        ([True, 13], "list of integers"),
        ([2, 13], "holds 13 values"),
        ([1, 2**70], "list of integers"),  # orjson reads an integer past 64 bits as a float
        (None, "list of integers"),
    ],
)
def test_open_inference_shapes_are_checked(gateway: Gateway, shape: Any, reason: str) -> None:
    r = httpx.post(f"{gateway.url}/v2/models/wine/infer", json=wine_tensor(shape, [1.0] * 13))
    assert r.status_code == 400, (shape, r.text)
    assert r.json()["error"] == "invalid_shape" and reason in r.json()["detail"], r.json()


def test_open_inference_shapes_that_fit_are_served(gateway: Gateway) -> None:
    values = list(row(0).values())
    for shape, data in (([1, 13], values), ([13], values), ([1, 13], [values])):
        r = httpx.post(f"{gateway.url}/v2/models/wine/infer", json=wine_tensor(shape, data))
        assert r.status_code == 200, (shape, r.text)
    text = {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    assert httpx.post(f"{gateway.url}/v2/models/profanity/infer", json=text).status_code == 200


def test_open_inference_deeply_nested_data_is_a_400(gateway: Gateway) -> None:
    for depth in (1_000, 100_000):
        deep = "[" * depth + "1.0" + "]" * depth
        body = f'{{"inputs": [{{"name": "f", "shape": [13], "datatype": "FP64", "data": {deep}}}]}}'
        r = httpx.post(
            f"{gateway.url}/v2/models/wine/infer",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400, (depth, r.text)
        assert r.json()["error"] == "invalid_json" and "nested" in r.json()["detail"]
