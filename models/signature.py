"""The generator signature (contract 2), recorded in checkpoints and manifests. numpy-free."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GeneratorSignature:
    """Inputs ``z float32[N, latent_dim]`` (+ ``labels int64[N]`` if conditional);
    output ``float32[N, channels, size, size]`` in [-1, 1]."""

    latent_dim: int
    conditional: bool
    num_classes: int = 10
    channels: int = 1
    image_size: int = 28

    @property
    def input_names(self) -> list[str]:
        return ["z", "labels"] if self.conditional else ["z"]

    @property
    def output_name(self) -> str:
        return "images"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "inputs": {
                "z": ["N", self.latent_dim],
                **({"labels": ["N"]} if self.conditional else {}),
            },
            "output": {self.output_name: ["N", self.channels, self.image_size, self.image_size]},
            "output_range": [-1.0, 1.0],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorSignature:
        fields = {"latent_dim", "conditional", "num_classes", "channels", "image_size"}
        return cls(**{k: v for k, v in data.items() if k in fields})
