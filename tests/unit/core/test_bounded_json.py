"""The one bounded JSON decoder and the iterative tensor flattening."""

from __future__ import annotations

import pytest

from router.core.bounded_json import MAX_DEPTH, NotJSON, TooDeep, depth_exceeds, flatten, loads


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 1_023, 5_000, 100_000])
def test_nesting_past_the_bound_is_too_deep_never_a_recursion_error(
    depth: int, lenient: bool
) -> None:
    with pytest.raises(TooDeep):
        loads(nested(depth), lenient=lenient)


def test_nesting_within_the_bound_decodes() -> None:
    value = loads(nested(MAX_DEPTH))
    assert flatten(value) == [1]
    assert loads(b'{"a": [{"b": [1, 2]}]}') == {"a": [{"b": [1, 2]}]}


def test_lenient_reads_non_finite_numbers_and_strict_does_not() -> None:
    assert loads(b"[NaN, Infinity]", lenient=True)[1] == float("inf")
    with pytest.raises(NotJSON):
        loads(b"[NaN]")
    with pytest.raises(NotJSON):
        loads(b"{", lenient=True)


def test_depth_counts_objects_and_arrays() -> None:
    assert not depth_exceeds({"a": [{"b": 1}]}, 3)
    assert depth_exceeds({"a": [{"b": []}]}, 3)
    assert not depth_exceeds("scalar", 0)


def test_flatten_is_row_major_and_iterative() -> None:
    assert flatten([[1, [2, [3]], []], 4, [[[5]]], {"d": 6}]) == [1, 2, 3, 4, 5, {"d": 6}]
    assert flatten(7) == [7]
    deep: list[object] = [8]
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert flatten(deep) == [8]
