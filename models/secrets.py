"""Secrets are checked before anything uses them: a known placeholder (the ``change-me`` values of
``.env.example`` and ``k8s/base/secrets/*.example.env``, vendor defaults such as ``minioadmin``)
or a secret too short to resist guessing is refused with one line naming the setting, unless
``DCGAN_INSECURE_DEV=true`` says this is a throwaway development setup (then it warns).

Our components check their own secrets as they read their settings. Those of third-party
components (Postgres, the Prefect server, MinIO's root user) are checked by
``python -m models.secrets NAME ...`` (:data:`THIRD_PARTY_CHECKS`), run from our image before
those start: compose's `secrets-check` service and the init containers of k8s/base."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.settings import read_once

log = logging.getLogger("models.secrets")

# Values people leave in place: the examples' prefix and the usual vendor and tutorial defaults.
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "replace-me", "your-", "example")
PLACEHOLDERS = frozenset(
    {"minioadmin", "admin", "password", "secret", "changeit", "test", "token", "prefect"}
)


class SecuritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_", env_file=".env", extra="ignore")

    # A development machine may run with placeholder or short secrets (each use warns). Never
    # set it where anyone else can reach the services.
    insecure_dev: bool = False


security_settings = read_once(SecuritySettings)


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in PLACEHOLDERS or lowered.startswith(PLACEHOLDER_PREFIXES)


def check_secret(value: SecretStr, setting: str, min_length: int) -> SecretStr:
    """``value``, or ValueError naming ``setting`` when it is a placeholder or shorter than
    ``min_length`` (allowed, with a warning, under DCGAN_INSECURE_DEV=true)."""
    secret = value.get_secret_value()
    if is_placeholder(secret):
        problem = "is a placeholder value (from an example file, or a vendor default)"
    elif len(secret) < min_length:
        problem = f"is shorter than {min_length} characters"
    else:
        return value
    if security_settings().insecure_dev:
        log.warning("secrets.insecure %s %s; allowed by DCGAN_INSECURE_DEV", setting, problem)
        return value
    raise ValueError(
        f"{setting} {problem}: set a random one (e.g. `openssl rand -hex 24`), or "
        "DCGAN_INSECURE_DEV=true on a development machine only"
    )


def check_auth_string(value: SecretStr, setting: str) -> SecretStr:
    """A basic-auth ``user:password`` (Prefect's API auth string): neither part a placeholder,
    the password at least 16 characters."""
    user, colon, password = value.get_secret_value().partition(":")
    if not colon or not user:
        raise ValueError(f"{setting} must be user:password")
    check_secret(SecretStr(user), f"{setting}'s user", min_length=1)
    check_secret(SecretStr(password), f"{setting}'s password", min_length=16)
    return value


def _at_least(min_length: int) -> Callable[[SecretStr, str], SecretStr]:
    return lambda value, name: check_secret(value, name, min_length=min_length)


# The secrets that third-party components read, by the variable they read them from. MinIO
# itself takes any root user of 3 characters and password of 8 (minioadmin included): the
# password must be as long as the other passwords here, the user merely not a placeholder.
THIRD_PARTY_CHECKS: dict[str, Callable[[SecretStr, str], SecretStr]] = {
    "POSTGRES_PASSWORD": _at_least(16),
    "PREFECT_API_AUTH_STRING": check_auth_string,
    "MINIO_ROOT_USER": _at_least(3),
    "MINIO_ROOT_PASSWORD": _at_least(16),
}


def check_environment(names: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """One line per problem with the named secrets of ``environ`` (empty: all good)."""
    problems = []
    for name in names:
        check = THIRD_PARTY_CHECKS.get(name)
        value = environ.get(name)
        try:
            if check is None:
                raise ValueError(
                    f"{name}: no check for it (known: {', '.join(THIRD_PARTY_CHECKS)})"
                )
            if not value:
                raise ValueError(f"{name} is not set")
            check(SecretStr(value), name)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.secrets NAME ...``: exit 2 with one line per problem, else 0."""
    names = list(sys.argv[1:] if argv is None else argv)
    if not names:
        print(f"usage: python -m models.secrets {' '.join(THIRD_PARTY_CHECKS)}", file=sys.stderr)
        return 2
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    problems = check_environment(names, os.environ)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"secrets: {', '.join(names)} checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
