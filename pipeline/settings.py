"""Pipeline settings from the environment (DCGAN_*) or .env, read once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from models.settings import read_once

# auto: bf16 only where the device runs it natively (pipeline.precision.decide); or forced.
PrecisionChoice = Literal["auto", "fp32", "bf16"]


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")  # datasets live in data_dir/<dataset name>/
    cache_dir: Path = Path(".cache")  # evaluation classifiers, S3 dataset copies
    download_timeout_s: float = 60.0
    precision: PrecisionChoice = "auto"  # every torch computation without an explicit precision


get_settings = read_once(PipelineSettings)
