"""The Open Inference front door under fuzz: datatypes against data, shapes, nesting, sizes,
NaN and Infinity, parameters and ids of every JSON type, for a text model and a features model.
Every case is a 200 or a 4xx in the front door's error form, never a 5xx. The generated cases
come from a seeded RNG, so a failure names a case that can be replayed."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory, WorkerFactory, write_experiment

SEED = 24
FEATURES = [f"f{i}" for i in range(13)]
DATATYPES = [
    "BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES",
    "FOO", "fp64", "",
]  # fmt: skip
DATA: list[Any] = [
    [1.0] * 13, [0.5], ["text"], [True] * 13, [None], [], [[1.0] * 13], [{"a": 1}], "scalar",
    1.5, None, {"x": [1]}, [[["x"]]], [1, "a", True, None], ["x"] * 13, [2**70] * 13,
]  # fmt: skip
SHAPES: list[Any] = [
    [1], [13], [1, 13], [13, 1], [0], [], [-1], [-1, -5], [1_000_000_000], [2**63, 2**63],
    "huge", None, 1, [1.5], [True], ["1"], [[1]], [1] * 100, [1] * 10_000, {"d": 1}, [13, 0],
]  # fmt: skip
JSON_VALUES: list[Any] = [None, True, False, 0, -1, 2**80, 1.5, "", "u-1", [], [1], {}, {"a": {}}]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.fixture(scope="module")
def gateway(
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    workers: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    folder = tmp_path_factory.mktemp("experiments")
    wine = start_worker("v1", model="wine").url
    write_experiment(
        folder,
        f"name: text\nmodel: text\ncontrol: v1\nvariants:\n  v1: {{url: '{workers['v1']}'}}\n"
        "policy: {kind: blue_green, active: v1}\n",
        "text.yaml",
    )
    write_experiment(
        folder,
        f"name: wine\nmodel: wine\ncontrol: v1\nvariants:\n  v1: {{url: '{wine}'}}\n"
        f"input: {{kind: features, names: [{', '.join(FEATURES)}]}}\n"
        "policy: {kind: blue_green, active: v1}\n",
        "wine.yaml",
    )
    return start_gateway(folder, TURNOUT_ACCESS_LOG="false")


def tensor(datatype: Any, shape: Any, data: Any, name: str = "in") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def raw_tensor(data: str, shape: str = "[13]") -> bytes:
    """A body with one FP64 tensor whose ``data`` and ``shape`` are raw JSON text (NaN,
    nesting past what ``json.dumps`` would write)."""
    tensor = f'{{"name": "x", "datatype": "FP64", "shape": {shape}, "data": {data}}}'
    return f'{{"inputs": [{tensor}]}}'.encode()


def cases() -> list[tuple[str, str, bytes]]:
    """(name, model, body) triples: hand-picked edges, then seeded random combinations."""
    rng = random.Random(SEED)
    out: list[tuple[str, str, bytes]] = []

    def add(name: str, model: str, body: Any) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        out.append((name, model, raw))

    for model in ("text", "wine"):
        for shape in SHAPES:
            add(
                f"{model} shape {str(shape)[:30]}",
                model,
                {"inputs": [tensor("FP64", shape, [1.0] * 13)]},
            )
        for depth in (10, 63, 64, 65, 100, 1_000, 5_000, 100_000):
            add(f"{model} data nested {depth}", model, raw_tensor("[" * depth + "1" + "]" * depth))
        for size in (0, 1, 12, 14, 1_000, 100_000):
            add(f"{model} {size} values", model, {"inputs": [tensor("FP64", [size], [0.5] * size)]})
        for value in NON_FINITE:
            data = ", ".join([value] + ["1.0"] * 12)
            add(f"{model} data {value}", model, raw_tensor(f"[{data}]", "[1, 13]"))
            add(f"{model} shape {value}", model, raw_tensor("[1.0]", f"[{value}]"))
        for value in JSON_VALUES:
            good = (
                tensor("BYTES", [1], ["hi"])
                if model == "text"
                else tensor("FP64", [1, 13], [0.5] * 13)
            )
            add(f"{model} parameters {value!r:.20}", model, {"inputs": [good], "parameters": value})
            add(
                f"{model} user_id {value!r:.20}",
                model,
                {"inputs": [good], "parameters": {"user_id": value}},
            )
            add(f"{model} id {value!r:.20}", model, {"inputs": [good], "id": value})
            add(
                f"{model} tensor parameters {value!r:.20}",
                model,
                {"inputs": [{**good, "parameters": value}]},
            )
        add(f"{model} huge body", model, b'{"inputs": [{"data": "' + b"x" * 2_000_000 + b'"}]}')
    for i in range(160):
        model = rng.choice(["text", "wine"])
        inputs = [
            tensor(
                rng.choice(DATATYPES),
                rng.choice(SHAPES),
                rng.choice(DATA),
                rng.choice(["x", "f0", "text"]),
            )
            for _ in range(rng.choice([1, 1, 1, 2, 13]))
        ]
        body: dict[str, Any] = {"inputs": inputs}
        if rng.random() < 0.3:
            body["parameters"] = rng.choice(JSON_VALUES)
        if rng.random() < 0.2:
            body["outputs"] = rng.choice([[{"name": "label"}], [{"name": "x"}], "all", [1]])
        add(f"random {i} ({model})", model, body)
    return out


def test_front_door_fuzz_never_gets_a_5xx(gateway: Gateway) -> None:
    all_cases = cases()
    assert len(all_cases) >= 200
    statuses: Counter[int] = Counter()
    bad: list[tuple[str, int, str]] = []
    with httpx.Client(timeout=30, headers={"content-type": "application/json"}) as client:
        for name, model, raw in all_cases:
            url = f"{gateway.url}/v2/models/{model}/infer"
            r = client.post(url, content=raw)
            statuses[r.status_code] += 1
            if r.status_code >= 500 or (
                r.status_code >= 400 and set(r.json()) != {"error", "detail"}
            ):
                bad.append((name, r.status_code, r.text[:200]))
    five_xx = sum(v for k, v in statuses.items() if k >= 500)
    print(
        f"[chaos] front door fuzz: {len(all_cases)} cases (seed {SEED}), "
        f"statuses {dict(sorted(statuses.items()))}, 5xx {five_xx}"
    )
    assert not bad, bad
    assert statuses[200] > 0  # the well-formed cases are served
    output = gateway.process.output()
    assert "Traceback" not in output and '"level":"error"' not in output
