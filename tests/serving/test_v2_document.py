"""The KServe V2 infer body of the OpenAPI document (serving.api.kserve.body_schema), and the binary
data extension for the fuzzer.

``as_binary`` sends a JSON infer request the binary way (a JSON header, then each input's tensor).
Every body that the document describes decodes, as JSON and as binary, to the same tensors (the
in-process route test, test_v2_routes.py, checks their images). The fuzz test (test_fuzz.py)
loads this file as its schemathesis hooks: a generated valid request that carries the
Inference-Header-Content-Length header is sent the binary way, so the header and the binary
decoder are fuzzed along with the JSON form.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from serving.api.kserve import DATATYPES, HEADER_LENGTH, INFER_REQUEST, body_schema, parse_infer
from serving.core.schemas import Limits

BINARY_LOG = "DCGAN_FUZZ_BINARY_LOG"  # the fuzz test counts the requests sent the binary way


def as_binary(request: dict[str, Any]) -> tuple[bytes, str]:
    """The body and Inference-Header-Content-Length of the same request sent the binary way."""
    header = copy.deepcopy(request)
    tensors = b""
    for spec in header["inputs"]:
        values = spec.pop("data")
        if spec["datatype"] == "FP32":
            values = [float(v) for v in values]
        raw = np.asarray(values, dtype=DATATYPES[spec["datatype"]]).tobytes()
        spec["parameters"] = {"binary_data_size": len(raw)}
        tensors += raw
    text = json.dumps(header).encode()
    return text + tensors, str(len(text))


if __name__ == "_schemathesis_hooks":  # loaded by `schemathesis run` (SCHEMATHESIS_HOOKS)

    @schemathesis.hook
    def map_case(context: Any, case: Any) -> Any:
        """A valid infer request that carries the header goes the binary way, with its length."""
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and case.path.endswith("/infer") and HEADER_LENGTH in case.headers:
            case.body, case.headers[HEADER_LENGTH] = as_binary(case.body)
            case.media_type = "application/octet-stream"
            if os.environ.get(BINARY_LOG):
                with open(os.environ[BINARY_LOG], "a") as log:
                    log.write("binary\n")
        return case


@pytest.mark.parametrize(
    ("limits", "latent_dim", "conditional"),
    [
        (Limits(max_batch_size=64, max_body_bytes=64 * 1024), 100, True),
        (Limits(max_batch_size=3, max_body_bytes=16 * 1024), 7, False),
        (Limits(max_batch_size=1024, max_body_bytes=4096), None, True),
    ],
)
def test_every_documented_body_decodes_the_same_as_json_and_as_binary(
    limits: Limits, latent_dim: int | None, conditional: bool
) -> None:
    components = body_schema(limits, latent_dim, conditional)
    body = {"$ref": f"#/components/schemas/{INFER_REQUEST}"}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "V2", "version": "1"},
        "paths": {
            "/infer": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {"200": {"description": "images"}},
                }
            }
        },
        "components": {"schemas": components},
    }
    cases = schemathesis.openapi.from_dict(document)["/infer"]["POST"].as_strategy()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def decodes(case: Any) -> None:
        text = json.dumps(case.body).encode()
        assert len(text) <= limits.max_body_bytes
        latent = latent_dim or 1
        by_json = parse_infer(text, None, limits, latent)
        by_binary = parse_infer(*as_binary(case.body), limits, latent)
        assert by_json.tensors.keys() == by_binary.tensors.keys()
        for name, array in by_json.tensors.items():
            np.testing.assert_array_equal(array, by_binary.tensors[name])
            assert array.dtype == by_binary.tensors[name].dtype

    decodes()
