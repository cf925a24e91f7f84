"""Protocol adapters, pure: what each sends (golden bytes) and how it reads answers.

No server here: encoding and decoding are our own logic. Real servers of every protocol answer
in ``tests/integration/test_protocols.py`` and ``tests/e2e/test_model_servers.py``.
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from router.upstream.failures import BadAnswer
from router.upstream.protocols import PROTOCOLS, Decoded, Payload, build_adapter
from router.upstream.protocols.fields import parse_path, read_path

TEXT = Payload("text", text="you idiot")
WINE = Payload("features", features={"alcohol": 13.2, "hue": 1.05, "proline": 1050.0})


def adapter(protocol: str, **settings: object):  # type: ignore[no-untyped-def]
    return build_adapter(protocol, PROTOCOLS[protocol].settings.model_validate(settings))


def answer(value: object) -> bytes:
    return orjson.dumps(value)


# --- field paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("confidence", ("confidence",)),
        ("outputs.0.data.0", ("outputs", 0, "data", 0)),
        ("outputs[0].data[0]", ("outputs", 0, "data", 0)),
        ("predictions.0", ("predictions", 0)),
        ("a-b.c_d", ("a-b", "c_d")),
    ],
)
def test_field_paths_parse(text: str, parsed: tuple[object, ...]) -> None:
    assert parse_path(text) == parsed


@pytest.mark.parametrize("text", ["", "a..b", "a.", ".a", "a[x]", "a[0", "a b", "a]"])
def test_field_paths_that_do_not_parse_say_where(text: str) -> None:
    with pytest.raises(ValueError, match=r"empty|does not parse at character"):
        parse_path(text)


def test_a_digit_segment_reads_a_list_index_or_a_key() -> None:
    assert read_path({"a": [10, 20]}, parse_path("a.1")) == 20
    assert read_path({"a": {"1": "x"}}, parse_path("a.1")) == "x"


# --- turnout ----------------------------------------------------------------------------------


def test_turnout_encodes_text_and_features_golden() -> None:
    turnout = adapter("turnout")
    assert turnout.encode(TEXT, "r1").path == "/predict"
    assert turnout.encode(TEXT, "r1").body == b'{"text":"you idiot"}'
    assert (
        turnout.encode(WINE, "r1").body
        == b'{"features":{"alcohol":13.2,"hue":1.05,"proline":1050.0}}'
    )


def test_turnout_decodes_label_and_score() -> None:
    decoded = adapter("turnout").decode(answer({"label": 1, "score": 0.9, "x": 1}), "r")
    assert decoded == Decoded(1, 0.9)


def test_turnout_answer_without_score_is_a_bad_answer() -> None:
    with pytest.raises(BadAnswer) as info:
        adapter("turnout").decode(answer({"label": 1}), "r")
    assert info.value.kind == "missing_field"


# --- http_json (the seed's service) -----------------------------------------------------------

SEED = {"score": "confidence", "label": "is_profane", "labels": {True: 1, False: 0}}


def test_http_json_reads_the_seed_service_with_four_settings() -> None:
    seed = adapter("http_json", **SEED, health="none")
    call = seed.encode(TEXT, "r")
    assert (call.path, call.body) == ("/predict", b'{"text":"you idiot"}')
    assert seed.decode(answer({"is_profane": True, "confidence": 0.97}), "r") == Decoded(1, 0.97)
    assert seed.decode(answer({"is_profane": False, "confidence": 0.2}), "r") == Decoded(0, 0.2)


def test_http_json_with_health_none_is_passive() -> None:
    assert asyncio.run(adapter("http_json", health="none").ready(_never)) is None


async def _never(path: str) -> tuple[int, bytes]:
    raise AssertionError(f"no readiness call expected, got {path}")


def test_http_json_reads_nested_paths_and_derives_a_label_from_a_threshold() -> None:
    service = adapter("http_json", score="outputs.0.data.0", threshold=0.5, path="/v1/score")
    assert service.encode(TEXT, "r").path == "/v1/score"
    decoded = service.decode(answer({"outputs": [{"data": [0.7]}]}), "r")
    assert decoded == Decoded(1, 0.7)


def test_http_json_without_paths_reads_label_and_score_when_present() -> None:
    plain = adapter("http_json")
    assert plain.decode(answer({"label": "spam", "score": 0.6}), "r") == Decoded("spam", 0.6)
    assert plain.decode(answer({"something": "else"}), "r") == Decoded(None, None)
    assert plain.decode(answer([1, 2]), "r") == Decoded(None, None)


def test_http_json_features_go_under_the_input_field() -> None:
    service = adapter("http_json", input_field="row")
    assert service.encode(WINE, "r").body.startswith(b'{"row":{"alcohol":13.2')


def test_probabilities_give_label_and_score() -> None:
    service = adapter("http_json", probabilities="proba")
    assert service.decode(answer({"proba": [0.2, 0.8]}), "r") == Decoded(1, 0.8)
    assert service.decode(answer({"proba": [[0.1, 0.3, 0.6]]}), "r") == Decoded(2, 0.6)
    mapped = adapter("http_json", probabilities="p", labels={0: "a", 1: "b", 2: "c"})
    assert mapped.decode(answer({"p": [0.7, 0.2, 0.1]}), "r") == Decoded("a", 0.7)


# --- bad answers: each its own reason ---------------------------------------------------------


def bad(protocol: str, body: bytes, request_id: str = "r", **settings: object) -> str:
    with pytest.raises(BadAnswer) as info:
        adapter(protocol, **settings).decode(body, request_id)
    return info.value.kind or ""


def test_non_json_answer_is_not_json() -> None:
    assert bad("http_json", b"OK, profane", **SEED) == "not_json"


def test_html_error_page_is_not_json() -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    assert bad("http_json", page, **SEED) == "not_json"
    assert bad("turnout", page) == "not_json"


def test_json_without_the_configured_field_is_missing_field() -> None:
    assert bad("http_json", answer({"is_profane": True}), **SEED) == "missing_field"
    assert bad("http_json", answer({"confidence": 0.5}), **SEED) == "missing_field"


def test_non_numeric_score_is_bad_score() -> None:
    assert bad("http_json", answer({"is_profane": True, "confidence": "high"}), **SEED) == (
        "bad_score"
    )
    assert bad("http_json", answer({"is_profane": True, "confidence": True}), **SEED) == (
        "bad_score"
    )


def test_nan_score_is_bad_score() -> None:
    body = json.dumps({"is_profane": True, "confidence": float("nan")}).encode()
    assert b"NaN" in body
    assert bad("http_json", body, **SEED) == "bad_score"
    assert bad("turnout", json.dumps({"label": 1, "score": float("inf")}).encode()) == "bad_score"


def test_label_outside_the_mapping_is_bad_label() -> None:
    assert bad("http_json", answer({"is_profane": "maybe", "confidence": 0.5}), **SEED) == (
        "bad_label"
    )
    assert bad("turnout", answer({"label": [1], "score": 0.5})) == "bad_label"


def test_non_object_answer_where_an_object_is_needed() -> None:
    assert bad("turnout", answer([1, 0.5])) == "not_object"


# --- bentoml ----------------------------------------------------------------------------------


def test_bentoml_posts_to_the_api_with_the_parameter_name() -> None:
    bento = adapter("bentoml", api="classify", score="score", label="label")
    call = bento.encode(TEXT, "r")
    assert (call.path, call.body) == ("/classify", b'{"text":"you idiot"}')
    assert bento.decode(answer({"label": 0, "score": 0.1}), "r") == Decoded(0, 0.1)
    wine = adapter("bentoml", input_field="row")
    assert wine.encode(WINE, "r").body.startswith(b'{"row":{')


def test_bentoml_readiness_is_readyz() -> None:
    seen: list[str] = []

    async def get(path: str) -> tuple[int, bytes]:
        seen.append(path)
        return 200, b""

    assert asyncio.run(adapter("bentoml").ready(get)) is True
    assert seen == ["/readyz"]


# --- mlflow -----------------------------------------------------------------------------------


def test_mlflow_encodes_text_as_inputs_and_features_as_a_data_frame() -> None:
    mlflow = adapter("mlflow")
    assert mlflow.encode(TEXT, "r").body == b'{"inputs":["you idiot"]}'
    assert mlflow.encode(WINE, "r").body == (
        b'{"dataframe_split":{"columns":["alcohol","hue","proline"],"data":[[13.2,1.05,1050.0]]}}'
    )
    assert adapter("mlflow", format="inputs").encode(WINE, "r").body == (
        b'{"inputs":[[13.2,1.05,1050.0]]}'
    )


def test_mlflow_reads_probability_rows() -> None:
    mlflow = adapter("mlflow")
    assert mlflow.decode(answer({"predictions": [[0.3, 0.7]]}), "r") == Decoded(1, 0.7)
    assert mlflow.decode(answer({"predictions": [[0.1, 0.2, 0.7]]}), "r") == Decoded(2, 0.7)
    labelled = adapter("mlflow", label="predictions.0")
    assert labelled.decode(answer({"predictions": [2]}), "r") == Decoded(2, None)


def test_mlflow_error_answer_is_upstream_error() -> None:
    body = answer({"error_code": "BAD_REQUEST", "message": "schema mismatch"})
    assert bad("mlflow", body) == "upstream_error"
    assert bad("mlflow", answer({"predictions": ["x"]})) == "bad_score"


# --- open inference ---------------------------------------------------------------------------


def test_open_inference_encodes_text_as_a_bytes_tensor_with_the_request_id() -> None:
    oip = adapter("open_inference", model="profanity", score_output="predict_proba")
    call = oip.encode(TEXT, "req-1")
    assert call.path == "/v2/models/profanity/infer"
    assert orjson.loads(call.body) == {
        "id": "req-1",
        "inputs": [
            {
                "name": "input-0",
                "shape": [1],
                "datatype": "BYTES",
                "data": ["you idiot"],
                "parameters": {"content_type": "str"},
            }
        ],
        "outputs": [{"name": "predict_proba"}],
    }


def test_open_inference_encodes_numeric_features_as_one_row() -> None:
    oip = adapter("open_inference", model="wine", model_version="v1", input_name="x")
    call = oip.encode(WINE, "r")
    assert call.path == "/v2/models/wine/versions/v1/infer"
    (tensor,) = orjson.loads(call.body)["inputs"]
    assert tensor == {
        "name": "x",
        "shape": [1, 3],
        "datatype": "FP64",
        "data": [13.2, 1.05, 1050.0],
    }


def test_open_inference_encodes_mixed_features_as_columns() -> None:
    oip = adapter("open_inference", model="m")
    body = orjson.loads(oip.encode(Payload("features", features={"a": 1.0, "b": "x"}), "r").body)
    assert body["parameters"] == {"content_type": "pd"}
    assert [(t["name"], t["datatype"]) for t in body["inputs"]] == [("a", "FP64"), ("b", "BYTES")]


def oip_answer(request_id: str = "r", **outputs: tuple[list[int], str, list[object]]) -> bytes:
    return answer(
        {
            "model_name": "m",
            "id": request_id,
            "outputs": [
                {"name": n, "shape": s, "datatype": d, "data": v}
                for n, (s, d, v) in outputs.items()
            ],
        }
    )


def test_open_inference_reads_the_configured_outputs() -> None:
    oip = adapter("open_inference", model="m", score_output="predict_proba", label_output="predict")
    body = oip_answer(predict=([1], "INT64", [1]), predict_proba=([1, 2], "FP64", [0.2, 0.8]))
    assert oip.decode(body, "r") == Decoded(1, 0.8)
    three = oip_answer(predict_proba=([1, 3], "FP64", [[0.1, 0.1, 0.8]]))
    assert adapter("open_inference", model="m", score_output="predict_proba").decode(
        three, "r"
    ) == Decoded(2, 0.8)


def test_open_inference_guesses_outputs_by_name_and_type_when_unset() -> None:
    oip = adapter("open_inference", model="m")
    assert oip.decode(oip_answer(predict=([1], "INT64", [0])), "r") == Decoded(0, None)
    body = oip_answer(out=([1, 2], "FP32", [0.4, 0.6]), cls=([1], "BYTES", ["yes"]))
    assert oip.decode(body, "r") == Decoded("yes", 0.6)


def test_open_inference_learns_outputs_from_the_model_metadata() -> None:
    oip = adapter("open_inference", model="m")
    pages = {
        "/v2/health/ready": (200, b""),
        "/v2/models/m/ready": (200, b""),
        "/v2/models/m": (
            200,
            answer(
                {
                    "name": "m",
                    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                    "outputs": [{"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}],
                }
            ),
        ),
    }

    async def get(path: str) -> tuple[int, bytes]:
        return pages[path]

    assert asyncio.run(oip.ready(get)) is True
    body = orjson.loads(oip.encode(TEXT, "r").body)
    assert body["inputs"][0]["name"] == "text"
    assert body["outputs"] == [{"name": "predict_proba"}]


def test_open_inference_not_ready_until_the_model_is() -> None:
    async def get(path: str) -> tuple[int, bytes]:
        return (200, b"") if path == "/v2/health/ready" else (400, b"")

    assert asyncio.run(adapter("open_inference", model="m").ready(get)) is False


def test_open_inference_answer_with_an_error_field_is_upstream_error() -> None:
    assert bad("open_inference", answer({"error": "model not loaded"}), model="m") == (
        "upstream_error"
    )


def test_open_inference_answer_with_another_id_is_id_mismatch() -> None:
    body = oip_answer("someone-else", predict=([1], "INT64", [1]))
    assert bad("open_inference", body, "mine", model="m") == "id_mismatch"


def test_open_inference_answer_without_the_configured_output_is_missing_field() -> None:
    body = oip_answer(predict=([1], "INT64", [1]))
    assert bad("open_inference", body, model="m", score_output="predict_proba") == ("missing_field")
