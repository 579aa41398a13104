"""The OpenAPI document is derived from the definitions the server uses (issue 31, item 3): the
GET query from GenerateRequest's fields, the JSON answers from the models the routes build them
with, each error's status from serving/http_status.py. A field or error added in one place shows
up in the document without a second edit."""

from __future__ import annotations

from typing import Any

from serving.api.answers import ServedModels, ServerReadiness
from serving.api.openapi import (
    BODY_ERRORS,
    ERROR_TEXT,
    IMAGE_ERRORS,
    _errors,
    _json,
    generate_body,
    query_parameters,
)
from serving.api.routes import v2
from serving.core.decoding import QUERY_TEXT_FORMS
from serving.core.encoding import ImagesJSON
from serving.core.errors import RequestError
from serving.core.schemas import GenerateRequest, Limits
from serving.http_status import STATUS

LIMITS = Limits(max_batch_size=77)


def _non_null(field: dict[str, Any]) -> dict[str, Any]:
    (value,) = [part for part in field.get("anyOf", [field]) if part.get("type") != "null"]
    return value


def test_the_query_is_the_body_s_fields_with_the_same_bounds() -> None:
    parameters = {p["name"]: p for p in query_parameters(LIMITS)}
    assert set(parameters) == set(GenerateRequest.model_fields)
    body = generate_body(LIMITS)["properties"]
    for name, parameter in parameters.items():
        if name in QUERY_TEXT_FORMS:
            assert parameter["schema"] == QUERY_TEXT_FORMS[name]["schema"]
            continue
        expected = _non_null(body[name])
        for key in ("type", "minimum", "maximum", "enum", "pattern", "maxLength"):
            assert parameter["schema"].get(key) == expected.get(key), (name, key)
        assert parameter["description"] == body[name]["description"]
    assert parameters["batch_size"]["schema"]["maximum"] == 77


def test_the_digit_bounds_come_from_the_field_type() -> None:
    digits = generate_body(LIMITS)["properties"]["digits"]["anyOf"]
    one, many = digits[0], digits[1]
    assert (one["minimum"], one["maximum"]) == (0, 9)
    assert (many["items"]["maximum"], many["minItems"], many["maxItems"]) == (9, 1, 77)


def test_every_request_error_is_documented_under_its_status() -> None:
    documented = set(BODY_ERRORS) | set(IMAGE_ERRORS) | set(ERROR_TEXT) | set(v2.ERROR_TEXT)
    raised = {cls for cls in STATUS if issubclass(cls, RequestError)}
    assert raised <= documented
    answers = _errors(*BODY_ERRORS, *IMAGE_ERRORS)
    assert set(answers) == {str(STATUS[error]) for error in (*BODY_ERRORS, *IMAGE_ERRORS)}
    assert list(answers) == sorted(answers)


def test_json_answers_are_the_models_the_routes_build() -> None:
    for model in (ImagesJSON, ServedModels, ServerReadiness):
        schema = _json(model)["application/json"]["schema"]
        assert set(schema["required"]) == {
            name for name, field in model.model_fields.items() if field.is_required()
        }
        assert "$defs" not in str(schema) and "$ref" not in str(schema)
