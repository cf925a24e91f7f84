"""The front door's shape rule: a list of at most MAX_DIMS non-negative integers whose product is
the number of values in ``data``; anything else is a 400 ``invalid_shape`` naming the tensor."""

from __future__ import annotations

from typing import Any

import pytest

from router.core.errors import BadRequest
from router.gateway.open_inference import MAX_DIMS, tensor_values


@pytest.mark.parametrize(
    ("shape", "data", "reason"),
    [
        ([1_000_000_000], [1.0], "holds 1 values"),
        ([-1, -5], [1.0] * 5, "non-negative"),
        ([-1, -1], [1.0], "non-negative"),
        ("huge", [1.0], "list of integers"),
        ([1] * 100_000, [1.0], "dimensions"),
        ([1] * (MAX_DIMS + 1), [1.0], "dimensions"),
        ([1.0], [1.0], "list of integers"),
        ([True], [1.0], "list of integers"),
        (None, [1.0], "list of integers"),
        ([2, 3], [[1, 2], [3, 4]], "holds 4 values"),
        ([0], [1.0], "holds 1 values"),
    ],
)
def test_shapes_that_do_not_describe_the_data_are_refused(
    shape: Any, data: Any, reason: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        tensor_values({"shape": shape, "data": data}, 2)
    assert raised.value.status == 400 and raised.value.code == "invalid_shape"
    assert "'inputs[2].shape'" in raised.value.detail and reason in raised.value.detail


@pytest.mark.parametrize(
    ("shape", "data", "values"),
    [
        ([1, 3], [1, 2, 3], [1, 2, 3]),
        ([1, 3], [[1, 2, 3]], [1, 2, 3]),
        ([3], [1, 2, 3], [1, 2, 3]),
        ([0], [], []),
        ([1], "text", ["text"]),
    ],
)
def test_shapes_that_describe_the_data_give_its_values(
    shape: list[int], data: Any, values: list[Any]
) -> None:
    assert tensor_values({"shape": shape, "data": data}, 0) == values
