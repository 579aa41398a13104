"""Network hyperparameters, saved in every checkpoint and manifest. Plain dataclass, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from models.contract import GeneratorSignature

Arch = Literal["dcgan", "fc"]


@dataclass(frozen=True)
class GANConfig:
    arch: Arch = "dcgan"  # "fc" is the fully connected baseline
    conditional: bool = True  # conditional on the digit, so clients can ask for a class
    latent_dim: int = 100  # size of z, as in the DCGAN paper
    num_classes: int = 10
    embed_dim: int = 16  # label embedding width fed to G (and to the FC D)
    g_width: int = 64  # base channel count of G (ngf); the 7x7 stage has 4x this
    d_width: int = 64  # base channel count of D (ndf)
    # D also scores the class by projection (Miyato & Koyama 2018): logit += <embed(y), features>.
    # A stronger conditioning signal than the label plane alone; D only, so serving is unchanged.
    d_projection: bool = False
    channels: int = 1
    image_size: int = 28

    def __post_init__(self) -> None:
        if self.arch not in ("dcgan", "fc"):
            raise ValueError(f"unknown arch {self.arch!r}: use 'dcgan' or 'fc'")
        for name in ("latent_dim", "num_classes", "embed_dim", "g_width", "d_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.image_size != 28:
            raise ValueError("only 28x28 images are supported")

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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
