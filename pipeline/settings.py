"""Pipeline settings from the environment (DCGAN_*) or .env, read once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")  # datasets live in data_dir/<dataset name>/
    cache_dir: Path = Path(".cache")  # evaluation classifiers, S3 dataset copies
    download_timeout_s: float = 60.0


@lru_cache
def get_settings() -> PipelineSettings:
    return PipelineSettings()
