"""Settings are read once per process: the first use of a settings class reads the environment
and .env, every later use gets that same object. Entry points (the CLI, the app factory, the
TorchServe handler) read them at start and pass them in; code deeper down that is given none
uses the process's own, never a fresh read per call.

Each settings class is declared with its reader next to it: ``registry_settings =
read_once(RegistrySettings)``. ``read_again()`` forgets them all: for the tests, which change
the environment between cases, and for a process whose environment really changed.
"""

from __future__ import annotations

import functools
from typing import TypeVar

from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)
_READERS: list[functools._lru_cache_wrapper[BaseSettings]] = []


def read_once(cls: type[S]) -> functools._lru_cache_wrapper[S]:
    """A function returning the process's one ``cls()``, read on its first call."""
    reader: functools._lru_cache_wrapper[S] = functools.cache(cls)
    _READERS.append(reader)
    return reader


def read_again() -> None:
    """Forget every settings object read so far; the next use reads the environment again."""
    for reader in _READERS:
        reader.cache_clear()
