"""The trainer's options, validated once, saved in every checkpoint and manifest.

Each option is declared once, with its default, its bounds and its help (the network's in
``models.netconfig.GANConfig``, inherited): ``dcgan train`` derives its command-line options from
these fields (``pipeline/cli_train.py``), and ``dcgan retrain --set key=value`` and the flow take
the same names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from models.netconfig import GANConfig
from pipeline.settings import PrecisionChoice

GLoss = Literal["non-saturating", "minimax"]
Loss = Literal["bce", "hinge"]
Sampling = Literal["shuffle", "class-balanced"]
Augment = Literal["none", "translation", "translation-cutout"]


class TrainConfig(GANConfig):
    """Defaults are the recipe whose quality is recorded in docs/training.md. The network's
    fields are GANConfig's (inherited, declared once); these are the data's, the optimiser's
    and the run's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: str = Field(
        default="mnist",
        description="mnist, fashion-mnist, or a name for your own data (with --data PATH).",
    )
    data: str | None = Field(
        default=None,
        description="Published data: a directory of its IDX files, s3://bucket/prefix, or unset "
        "for ./data + mirrors. Your own: an ImageFolder or save_to_disk directory, .npz, .parquet "
        "or an IDX images file (10% of each class held out for evaluation).",
    )
    limit: int | None = Field(
        default=None, ge=1, description="Train on a random subset of this many images."
    )
    # optimisation (Radford et al.: Adam, lr 2e-4, beta1 0.5)
    epochs: int = Field(
        default=10, ge=1, description="Total epochs (with --resume: the new total)."
    )
    batch_size: int = Field(default=128, ge=2, le=65536, description="Images per step.")
    lr_g: float = Field(default=2e-4, gt=0, le=1, description="Generator learning rate (Adam).")
    lr_d: float = Field(default=2e-4, gt=0, le=1, description="Discriminator learning rate (Adam).")
    beta1: float = Field(default=0.5, ge=0, lt=1, description="Adam beta1.")
    beta2: float = Field(default=0.999, ge=0, lt=1, description="Adam beta2.")
    # hinge by default: with the EMA over 10 epochs it beat bce on accuracy, worst digit and FD
    # (docs/training.md, "The default recipe, chosen by measurement").
    loss: Loss = Field(
        default="hinge",
        description="bce (binary cross entropy; --g-loss and --real-label apply) or hinge "
        "(D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z)); Lim & Ye 2017).",
    )
    g_loss: GLoss = Field(
        default="non-saturating",
        description="With --loss bce: non-saturating (max log D(G(z))) or minimax "
        "(min log(1 - D(G(z)))).",
    )  # minimax saturates early
    real_label: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="With --loss bce: target for real images (one-sided smoothing; 1.0 = off).",
    )
    d_steps: int = Field(
        default=1, ge=1, le=100, description="Discriminator updates per generator update."
    )
    # Moving average of G's weights (pipeline.ema): what is sampled, evaluated and exported.
    # On by default: over the 10-epoch recipe it beat the raw generator's FD from epoch 3 on, on
    # both CPU kinds (docs/training.md "EMA generator", benchmarks/results/recipes-mnist-*).
    ema_decay: float = Field(
        default=0.999,
        ge=0,
        lt=1,
        description="Serve a moving average of G's weights with this decay (0 = off).",
    )
    # Skewed or scarce data (pipeline.longtail): what D sees, and how it is kept from memorising.
    sampling: Sampling = Field(
        default="shuffle",
        description="shuffle (each image once per epoch; fake labels uniform) or class-balanced "
        "(real batches and fake labels uniform over the classes present: for skewed data).",
    )
    diffaugment: Augment = Field(
        default="none",
        description="DiffAugment for D on real and fake alike: none, translation or "
        "translation-cutout (for small or skewed data).",
    )
    lecam_weight: float = Field(
        default=0.0, ge=0, le=100, description="LeCam regularisation of D (0 = off; paper: 0.3)."
    )
    gsr_weight: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="Group spectral regularisation of what the label adds to G, the rare "
        "classes held hardest (0 = off; paper: 0.5; conditional models only).",
    )
    seed: int = Field(
        default=0, ge=0, le=2**63 - 1, description="Seed: same seed, device and data -> same run."
    )
    # execution
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    precision: PrecisionChoice = Field(
        default="auto",
        description="auto (DCGAN_PRECISION, else bf16 only where native), fp32 or bf16.",
    )
    compile: bool = Field(
        default=False, description="torch.compile the networks (worth it on GPUs for long runs)."
    )
    sample_seed: int = Field(
        default=20261122, ge=0, le=2**63 - 1, description="Fixed noise for the sample grids."
    )
    check_every: int = Field(
        default=50, ge=1, description="Steps between NaN checks and progress updates."
    )  # each is a host sync

    @model_validator(mode="after")
    def _gsr_needs_labels(self) -> TrainConfig:
        if self.gsr_weight > 0 and not self.conditional:
            raise ValueError("gsr_weight regularises what the label adds: conditional models only")
        return self

    def gan_config(self) -> GANConfig:
        return GANConfig(**self.model_dump(include=set(GANConfig.model_fields)))
