"""The trainer's options, validated once, saved in every checkpoint and manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.netconfig import GANConfig
from pipeline.settings import PrecisionChoice

GLoss = Literal["non-saturating", "minimax"]


class TrainConfig(BaseModel):
    """Defaults are the recipe whose quality is recorded in the README."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: str = "mnist"
    data: str | None = None  # directory, s3://bucket/prefix, or None for ./data + mirrors
    limit: int | None = Field(
        default=None, ge=1, description="train on a random subset of this size"
    )
    # networks
    arch: Literal["dcgan", "fc"] = "dcgan"
    conditional: bool = True
    latent_dim: int = Field(default=100, ge=1)
    g_width: int = Field(default=64, ge=1)
    d_width: int = Field(default=64, ge=1)
    d_projection: bool = False  # D scores the class by projection too (models/netconfig.py)
    embed_dim: int = Field(default=16, ge=1)
    # optimisation (Radford et al.: Adam, lr 2e-4, beta1 0.5)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=2, le=65536)
    lr_g: float = Field(default=2e-4, gt=0, le=1)
    lr_d: float = Field(default=2e-4, gt=0, le=1)
    beta1: float = Field(default=0.5, ge=0, lt=1)
    beta2: float = Field(default=0.999, ge=0, lt=1)
    g_loss: GLoss = "non-saturating"  # minimax: minimise log(1 - D(G(z))), saturates early
    real_label: float = Field(
        default=0.9, gt=0, le=1
    )  # one-sided label smoothing; 1.0 turns it off
    d_steps: int = Field(default=1, ge=1, le=100)  # discriminator updates per generator update
    # Moving average of G's weights (pipeline.ema): what is sampled, evaluated and exported. 0: off.
    ema_decay: float = Field(default=0.0, ge=0, lt=1)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    # execution
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: PrecisionChoice = "auto"  # auto: DCGAN_PRECISION, else what the device runs natively
    compile: bool = False  # torch.compile the networks (worth it on GPUs for long runs)
    sample_seed: int = Field(default=20261122, ge=0, le=2**63 - 1)  # fixed noise for sample grids
    check_every: int = Field(
        default=50, ge=1
    )  # steps between NaN checks / progress updates (a host sync)

    def gan_config(self) -> GANConfig:
        return GANConfig(
            arch=self.arch,
            conditional=self.conditional,
            latent_dim=self.latent_dim,
            embed_dim=self.embed_dim,
            g_width=self.g_width,
            d_width=self.d_width,
            d_projection=self.d_projection,
        )
