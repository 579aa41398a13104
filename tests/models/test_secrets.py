"""No placeholder or short secret is accepted: every secret of the example files is refused by the
component that reads it, an empty admin token disables admin, and DCGAN_INSECURE_DEV=true lets a
development machine run with them (warning)."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from models.s3 import S3Settings
from models.secrets import (
    PLACEHOLDER_PREFIXES,
    PLACEHOLDERS,
    THIRD_PARTY_CHECKS,
    check_environment,
)
from serving.api.settings import ServeSettings
from tests.test_cli import dcgan

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / ".env.example", *sorted((REPO / "k8s/base/secrets").glob("*.example.env"))]
SECRETS: dict[str, tuple[type[Any], str]] = {
    "DCGAN_SERVE_ADMIN_TOKEN": (ServeSettings, "admin_token"),
    "DCGAN_S3_ACCESS_KEY": (S3Settings, "access_key"),
    "DCGAN_S3_SECRET_KEY": (S3Settings, "secret_key"),
}


def build(variable: str, value: str) -> Any:
    settings_class, field = SECRETS[variable]
    return settings_class(_env_file=None, **{field: value})


def example_values(names: Collection[str] = SECRETS.keys()) -> list[tuple[str, str]]:
    found = []
    for path in EXAMPLES:
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in names:
                found.append((name, value))
    return found


def test_every_secret_of_the_example_files_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCGAN_INSECURE_DEV", raising=False)
    values = example_values()
    assert {name for name, _ in values} == set(SECRETS)  # each example file is covered
    for name, value in values:
        with pytest.raises(ValidationError, match=f"{name} is a placeholder"):
            build(name, value)


@given(
    st.sampled_from(sorted(SECRETS)),
    st.sampled_from([*PLACEHOLDER_PREFIXES, *sorted(PLACEHOLDERS)]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=30),
    st.booleans(),
)
def test_placeholders_are_refused_in_any_case_and_with_any_suffix(
    name: str, placeholder: str, suffix: str, upper: bool
) -> None:
    value = placeholder + (suffix if placeholder in PLACEHOLDER_PREFIXES else "")
    with pytest.raises(ValidationError, match=name):
        build(name, value.upper() if upper else value)


@pytest.mark.parametrize(
    "name,short", [("DCGAN_SERVE_ADMIN_TOKEN", "x7Kq9" * 3), ("DCGAN_S3_SECRET_KEY", "x7Kq9zz")]
)
def test_short_secrets_are_refused_random_ones_accepted(name: str, short: str) -> None:
    with pytest.raises(ValidationError, match="shorter than"):
        build(name, short)
    good = secrets.token_urlsafe(24)
    _, field = SECRETS[name]
    assert getattr(build(name, good), field).get_secret_value() == good


def test_an_empty_admin_token_disables_admin() -> None:
    assert ServeSettings(_env_file=None, admin_token="").admin_token is None  # type: ignore[call-arg]


def test_insecure_dev_allows_them_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DCGAN_INSECURE_DEV", "true")
    with caplog.at_level(logging.WARNING, logger="models.secrets"):
        assert build("DCGAN_SERVE_ADMIN_TOKEN", "change-me-admin-token").admin_token is not None
    assert "DCGAN_SERVE_ADMIN_TOKEN is a placeholder" in caplog.text


def test_the_server_refuses_to_start_with_a_placeholder_token(tmp_path: Path) -> None:
    started = dcgan(
        "serve",
        cwd=tmp_path,
        env={"DCGAN_SERVE_ADMIN_TOKEN": "change-me-admin-token", "DCGAN_INSECURE_DEV": "false"},
    )
    assert started.returncode == 2
    assert started.stderr.count("\n") == 1 and "DCGAN_SERVE_ADMIN_TOKEN" in started.stderr


def test_the_third_party_secrets_of_the_example_files_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Postgres's password, Prefect's auth string and MinIO's root user and password, checked for
    them (`python -m models.secrets`, compose's secrets-check and the k8s init containers)."""
    monkeypatch.delenv("DCGAN_INSECURE_DEV", raising=False)
    values = example_values(THIRD_PARTY_CHECKS.keys())
    assert {name for name, _ in values} == set(THIRD_PARTY_CHECKS)
    for name, value in values:
        (problem,) = check_environment([name], {name: value})
        assert problem.startswith(name) and "placeholder" in problem, problem


@given(
    user=st.from_regex(r"[a-z][a-z0-9]{2,12}", fullmatch=True),
    password=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"),
)
def test_an_auth_string_needs_a_real_user_and_a_16_character_password(
    user: str, password: str
) -> None:
    problems = check_environment(
        ["PREFECT_API_AUTH_STRING"], {"PREFECT_API_AUTH_STRING": f"{user}:{password}"}
    )
    placeholder = any(
        part.lower() in PLACEHOLDERS or part.lower().startswith(PLACEHOLDER_PREFIXES)
        for part in (user, password)
    )
    assert (problems == []) == (len(password) >= 16 and not placeholder), problems


# Each check that is a length, with its minimum (the auth string's has its own test above).
MIN_LENGTHS = {"POSTGRES_PASSWORD": 16, "MINIO_ROOT_USER": 3, "MINIO_ROOT_PASSWORD": 16}


@given(
    name=st.sampled_from(sorted(MIN_LENGTHS)),
    value=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"),
)
def test_a_third_party_secret_needs_its_length_and_no_placeholder(name: str, value: str) -> None:
    problems = check_environment([name], {name: value})
    lowered = value.lower()
    placeholder = lowered in PLACEHOLDERS or lowered.startswith(PLACEHOLDER_PREFIXES)
    good = bool(value) and len(value) >= MIN_LENGTHS[name] and not placeholder
    assert (problems == []) == good, problems
    assert set(MIN_LENGTHS) | {"PREFECT_API_AUTH_STRING"} == set(THIRD_PARTY_CHECKS)


GOOD = {
    "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
    "PREFECT_API_AUTH_STRING": f"dcgan:{secrets.token_urlsafe(18)}",
    "MINIO_ROOT_USER": f"root-{secrets.token_hex(4)}",
    "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
}


@pytest.mark.parametrize(
    ("env", "errors"),
    [
        ({}, [f"{name} is not set" for name in THIRD_PARTY_CHECKS]),
        (
            {
                **GOOD,
                "POSTGRES_PASSWORD": "x7Kq9",
                "PREFECT_API_AUTH_STRING": "no-colon-at-all-here",
                "MINIO_ROOT_USER": "minioadmin",
                "MINIO_ROOT_PASSWORD": "x7Kq9zQ2w8",  # MinIO itself takes 8 characters
            },
            [
                "POSTGRES_PASSWORD is shorter than 16",
                "PREFECT_API_AUTH_STRING must be user:password",
                "MINIO_ROOT_USER is a placeholder",
                "MINIO_ROOT_PASSWORD is shorter than 16",
            ],
        ),
        (GOOD, []),
    ],
)
def test_the_check_command_exits_2_with_one_line_per_problem(
    env: dict[str, str], errors: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "models.secrets", *THIRD_PARTY_CHECKS],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,  # no developer's .env
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == (2 if errors else 0), done.stderr
    assert len(lines) == len(errors), lines
    for line, error in zip(lines, errors, strict=True):
        assert line.startswith("error: " + error), line
