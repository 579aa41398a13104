"""Network hyperparameters, saved in every checkpoint and manifest. pydantic, no torch.

Declared once: ``pipeline.train_config.TrainConfig`` inherits these fields (with their defaults,
bounds and help), so ``dcgan train`` offers them as options without restating them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.contract import NUM_CLASSES, GeneratorSignature

Arch = Literal["dcgan", "fc"]
NOT_AN_OPTION: dict[str, Any] = {"cli": False}  # fixed by the data, not chosen per run


class GANConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Arch = Field(
        default="dcgan", description="dcgan, or fc for the fully connected baseline."
    )
    conditional: bool = Field(
        default=True,
        description="Condition G and D on the digit (so clients can ask for a class).",
        json_schema_extra={"flag": "--conditional/--unconditional"},
    )
    latent_dim: int = Field(default=100, ge=1, description="Size of the noise vector z.")
    num_classes: int = Field(default=NUM_CLASSES, ge=1, json_schema_extra=NOT_AN_OPTION)
    embed_dim: int = Field(
        default=16, ge=1, description="Width of the label embedding fed to G (and the FC D)."
    )
    g_width: int = Field(
        default=64, ge=1, description="Generator base channels (ngf); the 7x7 stage has 4x this."
    )
    d_width: int = Field(default=64, ge=1, description="Discriminator base channels (ndf).")
    # D also scores the class by projection (Miyato & Koyama 2018): logit += <embed(y), features>.
    # A stronger conditioning signal than the label plane alone; D only, so serving is unchanged.
    d_projection: bool = Field(default=False, description="D also scores the class by projection.")
    # Spectral normalisation (Miyato et al. 2018) bounds each D layer's Lipschitz constant, which
    # keeps D's gradients useful to G at higher learning rates. D's batch norm is dropped with it,
    # as in SN-GAN. D only: the generator, and so serving, is unchanged.
    d_spectral_norm: bool = Field(
        default=False, description="Spectral normalisation in every D layer (no batch norm in D)."
    )
    channels: int = Field(default=1, ge=1, json_schema_extra=NOT_AN_OPTION)
    image_size: Literal[28] = Field(default=28, json_schema_extra=NOT_AN_OPTION)  # 28x28 only

    @property
    def signature(self) -> GeneratorSignature:
        return GeneratorSignature(
            latent_dim=self.latent_dim,
            conditional=self.conditional,
            num_classes=self.num_classes,
            channels=self.channels,
            image_size=self.image_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANConfig:
        """From a checkpoint's or manifest's dict; keys of other (newer) fields are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.model_fields})
