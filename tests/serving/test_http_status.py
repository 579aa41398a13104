"""Typed errors, one HTTP mapping: every request error the core can raise has a status chosen in
``serving/http_status.py``, and no raise on the server's side writes a status number."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import serving.core.errors as errors
from serving.core.filtering import NoCandidate
from serving.http_status import STATUS, http_headers, http_status

REPO = Path(__file__).resolve().parents[2]
REQUEST_ERRORS = [
    cls
    for cls in vars(errors).values()
    if inspect.isclass(cls)
    and issubclass(cls, errors.RequestError)
    and cls is not errors.RequestError
]


@pytest.mark.parametrize("cls", REQUEST_ERRORS, ids=lambda cls: cls.__name__)
def test_every_request_error_has_its_own_status(cls: type[errors.RequestError]) -> None:
    assert cls in STATUS and 400 <= http_status(cls("m")) < 500


def test_subclasses_take_their_parents_status_and_headers_merge() -> None:
    assert http_status(NoCandidate("none")) == 422
    assert http_headers(errors.NotAuthenticated("no")) == {"WWW-Authenticate": "Bearer"}
    assert http_headers(errors.TooLarge("big", {"X-Max": "3"})) == {"X-Max": "3"}
    assert http_headers(errors.InvalidRequest("bad")) is None


def _status_literals_in_raises(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for part in ast.walk(node.exc):
                value = part.value if isinstance(part, ast.Constant) else None
                if type(value) is int and 400 <= value < 600:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


# The server's side (the client in serving/tools reports the status it received).
@pytest.mark.parametrize("package", ["serving/core", "serving/api", "serving/torchserve"])
def test_no_raise_writes_a_status_number(package: str) -> None:
    paths = sorted((REPO / package).rglob("*.py"))
    offenders = [hit for path in paths for hit in _status_literals_in_raises(path)]
    assert offenders == []
