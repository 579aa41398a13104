"""Secrets are checked before anything uses them: a known placeholder (the ``change-me`` values of
``.env.example`` and ``k8s/base/secrets/*.example.env``, vendor defaults such as ``minioadmin``)
or a secret too short to resist guessing is refused with one line naming the setting, unless
``DCGAN_INSECURE_DEV=true`` says this is a throwaway development setup (then it warns)."""

from __future__ import annotations

import logging

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    if SecuritySettings().insecure_dev:
        log.warning("secrets.insecure %s %s; allowed by DCGAN_INSECURE_DEV", setting, problem)
        return value
    raise ValueError(
        f"{setting} {problem}: set a random one (e.g. `openssl rand -hex 24`), or "
        "DCGAN_INSECURE_DEV=true on a development machine only"
    )
