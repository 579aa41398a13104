"""What may be a model name, version id, alias or file name: each becomes part of an object key
and of a local path, so each is checked against its whole pattern (``re.fullmatch``) before use."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from models.contract import MANIFEST_NAME, SIGNATURE_NAME
from models.registry.errors import InvalidName

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,62}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def is_id(value: object) -> bool:
    """A valid model name or version id (no '..': never a path step)."""
    return isinstance(value, str) and ID.fullmatch(value) is not None and ".." not in value


def is_alias(value: object) -> bool:
    return isinstance(value, str) and ALIAS.fullmatch(value) is not None


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise InvalidName(f"invalid {what} {value!r}: {rule}")
    return value


def check_model_name(name: str) -> str:
    return _check(ID, name, "model name", "use letters, digits, '.', '_', '-' (no '..')")


def check_version_id(version: str) -> str:
    return _check(
        ID,
        version,
        "version id",
        "use up to 100 letters, digits, '.', '_', '-', starting with a letter or digit, no '..'",
    )


def check_alias(alias: str) -> str:
    return _check(ALIAS, alias, "alias", "use lowercase letters, digits, '_', '-'")


def check_file_name(name: str) -> str:
    _check(FILE_NAME, name, "file name", "use letters, digits, '.', '_', '-', no '/' or '..'")
    if name in (MANIFEST_NAME, SIGNATURE_NAME):
        raise InvalidName(f"file name {name!r} is reserved for the manifest and its signature")
    return name


def new_version_id(now: datetime | None = None) -> str:
    """Sortable by time: ``20261122T115443Z-3fa9c1`` (UTC second + 24 random bits)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
