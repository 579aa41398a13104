"""Hypothesis property tests of the request parsing every backend shares (serving.core.schemas).

1. Any bytes, any JSON value, any query: the only exception is RequestError (a 4xx), never an
   OverflowError, RecursionError or anything else that would be a 500.
2. Every accepted request plans an image count within the limits, and its labels are digits.
3. Every request that the app's OpenAPI document says is valid is accepted (the document is
   exact), when the limits let every schema-valid /balance fit; the valid requests are drawn by
   schemathesis from the document itself.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.contract import GeneratorSignature
from models.registry import LocalStore, ModelRegistry
from serving.api.app import create_app
from serving.api.settings import ServeSettings
from serving.core.decoding import parse_body, parse_query
from serving.core.errors import RequestError
from serving.core.generation import plan_balance, plan_generate
from serving.core.schemas import BalanceRequest, GenerateRequest, Limits
from serving.http_status import http_status

LIMITS = Limits(max_batch_size=64, max_balance_images=640, max_body_bytes=4096, max_class_count=64)
DEFAULT = Limits()
SIGNATURE = GeneratorSignature(latent_dim=100, conditional=True)
JSON_TYPE = "application/json"

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 9, 10, 63, 64, 65, 1024, 2**31, 2**53, 2**63 - 1, 2**63, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
scalars = st.one_of(st.none(), numbers, st.text(max_size=8), st.sampled_from(["3", "json"]))
keys = st.sampled_from(["seed", "batch_size", "digits", "format", "counts", "target", "3", "x"])
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=12), st.dictionaries(st.one_of(keys, st.text(max_size=3)), inner)
    ),
    max_leaves=30,
)
bodies = st.one_of(st.dictionaries(keys, values, max_size=5), values)


def _accepted_within_limits(
    model: type[GenerateRequest] | type[BalanceRequest], body: bytes, limits: Limits
) -> None:
    try:
        request = parse_body(model, body, JSON_TYPE, limits)
    except RequestError as exc:
        assert 400 <= http_status(exc) < 500 and str(exc)
        return
    if isinstance(request, GenerateRequest):
        plan = plan_generate(request, SIGNATURE)
        assert 1 <= plan.size <= limits.max_batch_size
    else:
        plan = plan_balance(request, SIGNATURE)
        assert 0 <= plan.size <= limits.max_balance_images
    assert plan.labels.dtype.kind == "i" and all(0 <= d <= 9 for d in plan.labels.tolist())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, limits=st.sampled_from([LIMITS, DEFAULT]))
def test_any_json_is_accepted_within_limits_or_a_request_error(body: Any, limits: Limits) -> None:
    raw = json.dumps(body).encode()
    for model in (GenerateRequest, BalanceRequest):
        _accepted_within_limits(model, raw, limits)


@settings(max_examples=300)
@given(raw=st.binary(max_size=300), content_type=st.sampled_from([JSON_TYPE, "text/plain", None]))
def test_any_bytes_are_a_request_error_or_a_request(raw: bytes, content_type: str | None) -> None:
    for model in (GenerateRequest, BalanceRequest):
        try:
            parse_body(model, raw, content_type, LIMITS)
        except RequestError as exc:
            assert 400 <= http_status(exc) < 500


@settings(max_examples=300)
@given(
    params=st.dictionaries(
        st.sampled_from(["seed", "batch_size", "digits", "format", "colour"]),
        st.lists(st.text(max_size=25), min_size=1, max_size=3),
        max_size=4,
    )
)
def test_any_query_is_a_request_error_or_within_limits(params: dict[str, list[str]]) -> None:
    try:
        request = parse_query(params, LIMITS)
    except RequestError as exc:
        assert http_status(exc) == 422
        return
    assert 1 <= plan_generate(request, SIGNATURE).size <= LIMITS.max_batch_size


def _documented_operations() -> schemathesis.BaseSchema:
    """The OpenAPI document of an app with LIMITS (no model is loaded to build it)."""
    folder = Path(tempfile.mkdtemp(prefix="openapi-"))
    serve = ServeSettings(
        _env_file=None,  # type: ignore[call-arg]
        max_batch_size=LIMITS.max_batch_size,
        max_balance_images=LIMITS.max_balance_images,
        max_class_count=LIMITS.max_class_count,
        max_body_bytes=LIMITS.max_body_bytes,
        max_queue_images=1024,
    )
    app = create_app(serve, ModelRegistry(LocalStore(folder), "m"), cache_dir=folder / "cache")
    return schemathesis.openapi.from_dict(app.openapi())


DOCUMENT = _documented_operations()
VALID = settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)


@VALID
@given(case=DOCUMENT["/generate"]["POST"].as_strategy())
def test_every_documented_generate_body_is_accepted(case: Any) -> None:
    sent = isinstance(case.body, dict)  # the body is optional: schemathesis may send none
    raw = json.dumps(case.body).encode() if sent else b""
    request = parse_body(GenerateRequest, raw, JSON_TYPE, LIMITS)
    assert plan_generate(request, SIGNATURE).size == request.batch_size <= LIMITS.max_batch_size


@VALID
@given(case=DOCUMENT["/generate"]["GET"].as_strategy())
def test_every_documented_query_is_accepted(case: Any) -> None:
    params = {key: [str(value)] for key, value in (case.query or {}).items()}
    request = parse_query(params, LIMITS)
    assert 1 <= plan_generate(request, SIGNATURE).size <= LIMITS.max_batch_size


@VALID
@given(case=DOCUMENT["/balance"]["POST"].as_strategy())
def test_every_documented_balance_body_is_accepted(case: Any) -> None:
    request = parse_body(BalanceRequest, json.dumps(case.body).encode(), JSON_TYPE, LIMITS)
    planned = plan_balance(request, SIGNATURE).size
    assert planned == sum(request.deficits()) <= LIMITS.max_balance_images
