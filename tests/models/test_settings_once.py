"""Settings are read once per process (models/settings.py): every settings class has its reader,
a second use returns the first read's object, and a changed environment is seen only after
``read_again`` (what the suite does before each test)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from pydantic_settings import BaseSettings

from models import settings as once
from models.registry.settings import registry_settings

MODULES = [
    "models.secrets",
    "models.s3",
    "models.registry.settings",
    "pipeline.settings",
    "serving.api.settings",
]


def test_every_settings_class_is_read_through_one_reader() -> None:
    classes = {
        cls
        for name in MODULES
        for cls in vars(importlib.import_module(name)).values()
        if inspect.isclass(cls) and issubclass(cls, BaseSettings) and cls is not BaseSettings
    }
    read = {reader().__class__ for reader in once._READERS}
    assert classes and classes <= read


def test_a_second_use_is_the_first_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCGAN_REGISTRY_MODEL_NAME", "first-name")
    first = registry_settings()
    monkeypatch.setenv("DCGAN_REGISTRY_MODEL_NAME", "second-name")
    assert registry_settings() is first and first.model_name == "first-name"
    once.read_again()
    assert registry_settings().model_name == "second-name"
