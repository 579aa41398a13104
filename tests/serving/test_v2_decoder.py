"""The KServe V2 decoder (serving.api.kserve.parse_infer) on anything a client can send.

Issue 29 found 500s from outside: a shape whose element count overflows int64 or wraps to zero,
``parameters`` of the wrong type, an Inference-Header-Content-Length that ``str.isdigit`` takes but
``int`` does not ('²'), deep nesting (V2 bodies skipped the strict JSON rules). Here: whatever the
JSON, raw text or header, the only exception is a RequestError (a 4xx), and what is accepted is
within the limits, before numpy sees a shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.api.kserve import DATATYPES, INPUTS, InferRequest, parse_infer
from serving.core.decoding import MAX_JSON_DEPTH, strict_json
from serving.core.errors import RequestError
from serving.core.schemas import Limits
from serving.http_status import http_status

LIMITS = Limits(max_batch_size=64, max_body_bytes=64 * 1024)
LATENT = 100
HUGE = [2**31, 2**32, 2**32 + 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 1, 2**70, 10**30]
EDGES = [-(2**63), -1, 0, 1, 9, 10, 63, 64, 65, 99, 100, 101, *HUGE]

numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(EDGES),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
words = st.sampled_from(
    [*INPUTS, *DATATYPES, "BYTES", "UINT8", "images", "inputs", "outputs", "parameters", "id"]
)
scalars = st.one_of(st.none(), numbers, words, st.text(max_size=6))
keys = st.sampled_from(
    [
        "name",
        "datatype",
        "shape",
        "data",
        "parameters",
        "binary_data_size",
        "binary_data",
        "binary_data_output",
        "classification",
        "inputs",
        "outputs",
        "id",
    ]
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.one_of(keys, st.text(max_size=3)), inner)
    ),
    max_leaves=25,
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four: the checks past the first are reached, and each is broken."""
    return st.tuples(st.booleans(), st.booleans()).flatmap(lambda b: other if all(b) else valid)


shapes = st.one_of(
    st.lists(st.sampled_from(EDGES), max_size=3),
    st.lists(st.integers(min_value=0, max_value=130), min_size=1, max_size=2),
    st.sampled_from([[1], [3], [2, 100], [2**32, 2**32], [0, 2**70], [2**33, 0], [-1], [1, -100]]),
    values,
)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    """An input that is V2-shaped more often than not, so the checks past the first are reached."""
    spec: dict[str, Any] = {
        "name": draw(mostly(st.sampled_from(list(INPUTS)), values)),
        "datatype": draw(mostly(st.sampled_from(list(DATATYPES)), values)),
        "shape": draw(shapes),
    }
    shape = spec["shape"]
    sized = isinstance(shape, list) and all(type(d) is int and 0 <= d <= 300 for d in shape)
    count = math.prod(shape) if sized else draw(st.integers(0, 5))
    spec["data"] = draw(
        mostly(
            st.lists(numbers, min_size=count, max_size=count) if count <= 300 else st.just([]),
            st.one_of(st.lists(st.lists(numbers, max_size=3), max_size=3), values),
        )
    )
    if draw(st.booleans()):
        spec["parameters"] = draw(
            mostly(st.dictionaries(keys, st.one_of(numbers, values), max_size=2), values)
        )
    if draw(st.integers(0, 4)) == 0:
        spec.pop(draw(st.sampled_from(list(spec))))  # a missing field
    return spec


requests = st.fixed_dictionaries(
    {"inputs": mostly(st.lists(tensors(), max_size=4), values)},
    optional={
        "id": mostly(st.text(max_size=140), values),
        "outputs": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.one_of(st.just("images"), values)},
                    optional={"parameters": mostly(st.dictionaries(keys, values), values)},
                ),
                max_size=2,
            ),
            values,
        ),
        "parameters": mostly(st.dictionaries(keys, values, max_size=2), values),
    },
).flatmap(lambda request: mostly(st.just(request), values.map(lambda v: {**request, "x": v})))
headers = st.one_of(
    st.none(),
    st.text(max_size=25),
    st.sampled_from(["²", "٣", "¹2", " 12", "+12", "1_0", "0x10", "-1", "", "1" * 25, "0" * 21]),
    st.integers(min_value=0, max_value=2**70).map(str),
)


def _judged(body: bytes, header: str | None) -> InferRequest | None:
    """parse_infer's answer: a request within the limits, or None for a RequestError (4xx)."""
    try:
        request = parse_infer(body, header, LIMITS, LATENT)
    except RequestError as exc:
        assert 400 <= http_status(exc) < 500 and str(exc), exc
        assert len(str(exc)) < 400  # a client's 5,000-digit number is not echoed back
        return None
    for name, array in request.tensors.items():
        assert array.dtype.str in DATATYPES.values() and array.ndim == INPUTS[name].rank, name
        assert 1 <= len(array) <= LIMITS.max_batch_size
        if name == "z":
            assert array.shape[1] == LATENT and np.isfinite(array).all()
    return request


@settings(max_examples=300, deadline=None)
@given(request=requests, header=headers, tail=st.binary(max_size=40))
def test_any_v2_shaped_request_is_accepted_within_limits_or_a_request_error(
    request: dict[str, Any], header: str | None, tail: bytes
) -> None:
    text = json.dumps(request).encode()
    _judged(text, header)
    _judged(text + tail, str(len(text)))  # the binary extension: the JSON header, then data


@settings(max_examples=200, deadline=None)
@given(value=values, header=headers)
def test_any_json_value_is_a_request_or_a_request_error(value: Any, header: str | None) -> None:
    _judged(json.dumps(value).encode(), header)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200), header=headers)
def test_any_bytes_are_a_request_or_a_request_error(raw: bytes, header: str | None) -> None:
    _judged(raw, header)


@settings(max_examples=50, deadline=None)
@given(depth=st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=20_000), key=st.booleans())
def test_deep_nesting_is_refused_before_parsing(depth: int, key: bool) -> None:
    inner = b"[" * depth + b"]" * depth
    body = b'{"inputs": ' + inner + b"}" if key else inner
    with pytest.raises(RequestError, match="nests deeper") as caught:
        parse_infer(body, None, LIMITS, LATENT)
    assert http_status(caught.value) == 400


@settings(max_examples=100, deadline=None)
@given(key=keys, first=values, second=values, where=st.sampled_from(["top", "input", "output"]))
def test_a_repeated_key_is_refused_wherever_it_is(
    key: str, first: Any, second: Any, where: str
) -> None:
    """Raw text, as json.dumps never repeats a key: the strict parser's 422 on every route."""
    pair = f"{json.dumps(key)}: {json.dumps(first)}, {json.dumps(key)}: {json.dumps(second)}"
    seed = '"name": "seed", "datatype": "INT64", "shape": [1], "data": [1]'
    body = {
        "top": f'{{"inputs": [{{{seed}}}], {pair}}}',
        "input": f'{{"inputs": [{{{seed}, {pair}}}]}}',
        "output": f'{{"inputs": [{{{seed}}}], "outputs": [{{"name": "images", {pair}}}]}}',
    }[where]
    with pytest.raises(RequestError, match="repeats the key") as caught:
        parse_infer(body.encode(), None, LIMITS, LATENT)
    assert http_status(caught.value) == 422


def _seed_input(**changes: Any) -> dict[str, Any]:
    return {"name": "seed", "datatype": "INT64", "shape": [1], "data": [7], **changes}


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "z", "datatype": "FP32", "shape": [2**32, 2**32], "data": []}, "[N, 100]"),
        ({"name": "z", "datatype": "FP32", "shape": [2**32, 100], "data": []}, "rows"),
        ({"name": "z", "datatype": "FP32", "shape": [0, 100], "data": []}, "rows"),
        ({"name": "labels", "datatype": "INT64", "shape": [2**70], "data": []}, "rows"),
        ({"name": "labels", "datatype": "INT64", "shape": [2**64], "data": []}, "rows"),
        (_seed_input(shape=[2**33, 0]), "is [1]"),
        (_seed_input(shape=[1], parameters={"binary_data_size": 2**70}), "binary_data_size"),
        (_seed_input(data=[2**64]), "integer"),
        ({"name": "z", "datatype": "FP32", "shape": [1, 100], "data": [10**400] * 100}, "finite"),
    ],
)
def test_sizes_are_checked_in_python_integers(tensor: dict[str, Any], message: str) -> None:
    """Element counts that overflow int64 or wrap to zero (np.prod) are refused, not computed."""
    body = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(RequestError, match=message.replace("[", r"\[")) as caught:
        parse_infer(body, None, LIMITS, LATENT)
    assert 400 <= http_status(caught.value) < 500


@pytest.mark.parametrize(
    ("where", "parameters"),
    [
        ("request", []),
        ("request", "binary"),
        ("request", None),
        ("request", {"binary_data_output": "yes"}),
        ("request", {"priority": 1}),
        ("input", [1]),
        ("input", 0),
        ("input", {"binary_data_size": True}),
        ("input", {"binary_data_size": -4}),
        ("output", [1]),
        ("output", "x"),
        ("output", {"binary_data": 1}),
        ("output", {"classification": 3}),
    ],
)
def test_parameters_of_the_wrong_type_are_400(where: str, parameters: Any) -> None:
    request: dict[str, Any] = {"inputs": [_seed_input()], "outputs": [{"name": "images"}]}
    holder = {"request": request, "input": request["inputs"][0], "output": request["outputs"][0]}
    holder[where]["parameters"] = parameters
    with pytest.raises(RequestError, match="parameter") as caught:
        parse_infer(json.dumps(request).encode(), None, LIMITS, LATENT)
    assert http_status(caught.value) == 400


@pytest.mark.parametrize("header", ["²", "٣", "¹", "١٢", " 12", "12 ", "+12", "1_2", "", "1" * 21])
def test_the_header_length_is_plain_ascii_digits(header: str) -> None:
    body = json.dumps({"inputs": [_seed_input()]}).encode()
    with pytest.raises(RequestError, match="ASCII digits") as caught:
        parse_infer(body, header, LIMITS, LATENT)
    assert http_status(caught.value) == 400


def test_binary_and_json_forms_are_the_same_request() -> None:
    seed = {"name": "seed", "datatype": "UINT64", "shape": [1]}
    labels = {"name": "labels", "datatype": "INT32", "shape": [3]}
    json_form = {"id": "r", "inputs": [{**seed, "data": [7]}, {**labels, "data": [3, 1, 4]}]}
    sizes = ({"binary_data_size": 8}, {"binary_data_size": 12})
    header = {
        "id": "r",
        "inputs": [{**seed, "parameters": sizes[0]}, {**labels, "parameters": sizes[1]}],
    }
    text = json.dumps(header).encode()
    raw = text + np.array([7], "<u8").tobytes() + np.array([3, 1, 4], "<i4").tobytes()
    by_json = parse_infer(json.dumps(json_form).encode(), None, LIMITS, LATENT)
    by_binary = parse_infer(raw, str(len(text)), LIMITS, LATENT)
    assert by_json.id == by_binary.id == "r"
    for name in ("seed", "labels"):
        np.testing.assert_array_equal(by_json.tensors[name], by_binary.tensors[name])
        assert by_json.tensors[name].dtype == by_binary.tensors[name].dtype
    with pytest.raises(RequestError, match="belong to no input"):
        parse_infer(raw + b"x", str(len(text)), LIMITS, LATENT)
    with pytest.raises(RequestError, match="ends before"):
        parse_infer(raw[:-1], str(len(text)), LIMITS, LATENT)


@settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=100),
        st.sampled_from([b"", b" ", b'{"inputs": [NaN]}', b'{"id": Infinity}', b"[1e400]"]),
    )
)
def test_every_route_reads_json_by_one_rule(body: bytes) -> None:
    """strict_json reads the bodies of /generate, /balance and V2 alike: what it refuses, V2
    refuses with the same status and message."""
    try:
        strict_json(body, LIMITS)
    except RequestError as exc:
        with pytest.raises(RequestError) as caught:
            parse_infer(body, None, LIMITS, LATENT)
        assert (http_status(caught.value), str(caught.value)) == (http_status(exc), str(exc))
