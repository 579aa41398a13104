"""Service configuration from the environment (``DCGAN_SERVE_*``) or .env.

Where the models come from is the registry's own settings (``DCGAN_REGISTRY_*``, ``DCGAN_S3_*``),
shared with the pipeline so one .env describes the whole stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.contract import DEFAULT_MAX_CANDIDATES, PRODUCTION
from models.registry.names import check_alias, check_model_name
from models.secrets import check_secret
from models.settings import read_once
from serving.core.onnx_backend import Device
from serving.core.schemas import MAX_CANDIDATES_CEILING, Limits


@dataclass(frozen=True)
class ServedModel:
    """One model the server answers with: its registry name and the alias it follows."""

    name: str
    alias: str


def parse_models(text: str, default_alias: str) -> tuple[ServedModel, ...]:
    """``cdcgan-mnist,cdcgan-fashion@staging`` -> the models in order (no alias: the default);
    a bad name or alias, or a model named twice, is a ValueError naming it."""
    served: list[ServedModel] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, _, alias = entry.partition("@")  # InvalidName is a ValueError
        model = ServedModel(
            check_model_name(name.strip()), check_alias(alias.strip() or default_alias)
        )
        if any(m.name == model.name for m in served):
            raise ValueError(f"model {model.name!r} is named twice")
        served.append(model)
    return tuple(served)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_SERVE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    alias: str = PRODUCTION  # the registry alias followed (by each model that names none)
    # The models served, comma-separated, each a registry model name with an optional @alias:
    # "cdcgan-mnist,cdcgan-fashion-mnist@staging". The first answers requests that name no model.
    # Empty: the registry's model (DCGAN_REGISTRY_MODEL_NAME) alone.
    models: str = ""
    poll_interval_s: float = Field(default=10.0, ge=0)  # 0: never poll; reload on request only
    # Required by /admin/*; unset or empty: the admin endpoints are disabled (they refuse).
    admin_token: SecretStr | None = None
    # Version directories kept in the model cache (DCGAN_REGISTRY_CACHE_DIR), the served one
    # included; the newest loaded is what a restart serves while the registry is unreachable.
    cache_versions: int = Field(default=3, ge=1)

    device: Device = (
        "auto"  # auto: CUDA when its provider starts (onnx_backend.cuda_problem), else CPU
    )
    # Concurrent inference calls and ONNX Runtime threads per call. 0: choose (CPU: one 1-thread
    # call per usable core, the fastest measured; CUDA: one call). Set both under a CPU quota.
    workers: int = Field(default=0, ge=0)
    threads: int = Field(default=0, ge=0)

    max_batch_size: int = Field(default=1024, ge=1)  # images per /generate request
    max_balance_images: int = Field(default=60_000, ge=1)  # images per /balance request
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_class_count: int = Field(default=1_000_000_000, ge=1)  # each /balance count and target
    # Filtered answers (min_confidence): candidates drawn per image before the request fails
    # with a 422 (a request may ask for fewer). A filtered request is admitted for its worst
    # case, images x max_candidates queued images, so it may ask for at most
    # max_queue_images // max_candidates images (4,096 by default); more is a 413.
    max_candidates: int = Field(default=DEFAULT_MAX_CANDIDATES, ge=1, le=MAX_CANDIDATES_CEILING)

    # Dynamic batching: concurrent requests share one inference call of up to batch_max_images,
    # waiting at most batch_wait_ms for company. batch_wait_ms=0 still merges what is queued.
    # batch_max_images also bounds a request's memory: every generator and classifier call
    # (a filtered request's candidates too) holds at most this many images, so what a request
    # holds beyond its own answer (about 2 KB an image, n <= max_balance_images) is this many
    # images' activations per worker (benchmarks/balance_memory.py measures it).
    batching: bool = True
    batch_max_images: int = Field(default=256, ge=1)
    batch_wait_ms: float = Field(default=0.0, ge=0)
    # Server limits (serving/api/server.py): a client must send its headers and its body within
    # these times (else the connection is closed / 408); at most limit_concurrency requests are in
    # the app at once (more: 503 + Retry-After; the health probes have a budget of their own); a
    # client that takes none of its answer for send_timeout_s is reset; on SIGTERM /readyz turns
    # 503 at once, the server keeps answering for drain_s (so load balancers stop sending), then
    # finishes what is in flight within shutdown_grace_s and exits.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    keep_alive_s: float = Field(default=5.0, gt=0)
    limit_concurrency: int = Field(default=512, ge=1)
    send_timeout_s: float = Field(default=30.0, gt=0)
    drain_s: float = Field(default=2.0, ge=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)  # drain + grace < k8s' default 30 s

    # Images admitted and not yet computed; a request that would pass it gets 503 + Retry-After.
    max_queue_images: int = Field(default=65_536, ge=1)

    @field_validator("admin_token")
    @classmethod
    def _real_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # empty means disabled, never "a token that is the empty string"
        return check_secret(value, "DCGAN_SERVE_ADMIN_TOKEN", min_length=16)

    @field_validator("alias")
    @classmethod
    def _valid_alias(cls, value: str) -> str:
        return check_alias(value)  # InvalidName is a ValueError: a one-line ValidationError

    @model_validator(mode="after")
    def _valid_models(self) -> Self:
        parse_models(self.models, self.alias)
        return self

    def served_models(self, default_model: str) -> tuple[ServedModel, ...]:
        """What this server serves, in order; ``default_model`` when ``models`` is empty."""
        return parse_models(self.models, self.alias) or (ServedModel(default_model, self.alias),)

    @model_validator(mode="after")
    def _every_allowed_request_fits(self) -> Self:
        largest = max(self.max_batch_size, self.max_balance_images, self.max_candidates)
        if self.max_queue_images < largest:
            raise ValueError(
                f"max_queue_images ({self.max_queue_images}) must hold the largest request "
                f"allowed ({largest}, from max_batch_size / max_balance_images, and a filtered "
                "image's max_candidates)"
            )
        return self

    def limits(self) -> Limits:
        return Limits(
            max_batch_size=self.max_batch_size,
            max_balance_images=self.max_balance_images,
            max_body_bytes=self.max_body_bytes,
            max_class_count=self.max_class_count,
        )


serve_settings = read_once(ServeSettings)
