"""One run's GAN: networks, optimizers and RNG, D and G updated in alternation, epoch by epoch.

Built for throughput on one device: the whole dataset lives on the device, batches are index
gathers, statistics accumulate in device tensors and reach the host only every ``check_every``
steps (for the NaN check and the progress bar) and at the end of an epoch. Where the device runs
bf16 natively (``pipeline.precision.decide``) it trains in bf16 autocast, else in fp32; the
losses (gan_loss.py) take fp32 logits.

Per epoch it records D loss, G loss, mean D(x), mean D(G(z)) (both drift toward 0.5 as G gets
good), D accuracy and the minimax value E[log D(x)] + E[log(1 - D(G(z)))] (-log 4 at the
equilibrium), and leaves a sample grid from fixed noise and a checkpoint (run_files.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.contract import CHECKPOINT_NAME
from models.networks import build_discriminator, build_generator
from pipeline.device import resolve_device, to_device_images
from pipeline.ema import GeneratorEMA
from pipeline.errors import CheckpointError, TrainingDiverged, UserError
from pipeline.gan_loss import discriminator_loss, generator_loss
from pipeline.longtail import (
    MIN_STEPS_TO_JUDGE,
    ClassBalancedSampler,
    CollapseCheck,
    GroupSpectral,
    LeCam,
    class_term,
    collapse_advice,
    collapse_signals,
    diff_augment,
    group_sigma,
    real_class_spread,
)
from pipeline.precision import decide
from pipeline.run_files import save_run, write_samples
from pipeline.train_config import TrainConfig

log = logging.getLogger("dcgan.train")

# Order of the per-step statistics accumulated on the device.
_D_STATS = ("loss_d", "d_x", "d_g_z", "d_accuracy", "minimax_value")
EpochCallback = Callable[[dict[str, Any]], None]


class GANTrainer:
    """Owns the networks, optimizers and RNG of one run; ``fit`` trains epoch by epoch."""

    def __init__(self, cfg: TrainConfig, out_dir: Path) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.gan_cfg = cfg.gan_config()
        self.device = resolve_device(cfg.device)
        self.precision = decide(self.device, cfg.precision)
        torch.manual_seed(cfg.seed)  # weight init
        self.generator = build_generator(self.gan_cfg).to(self.device)
        self.discriminator = build_discriminator(self.gan_cfg).to(self.device)
        if self.gan_cfg.arch == "dcgan":  # oneDNN / cuDNN convolutions prefer NHWC
            # Module.to(memory_format=...) works at runtime; torch's stubs lack the overload.
            self.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self.discriminator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **fused
        )
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), **fused
        )
        self.ema = GeneratorEMA(self.generator, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(cfg.seed)
        self.lecam = LeCam(self.device) if cfg.lecam_weight > 0 else None
        self.sampler: ClassBalancedSampler | None = None  # set by fit() when class-balanced
        self.gsr: GroupSpectral | None = None  # set by fit() from the class counts, when on
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.dataset_info: dict[str, Any] = {}
        # Compiled views share parameters with the plain modules, which are what we save.
        self._g = torch.compile(self.generator) if cfg.compile else self.generator
        self._d = torch.compile(self.discriminator) if cfg.compile else self.discriminator

    @property
    def served_generator(self) -> nn.Module:
        """The generator that is sampled, evaluated and exported: the moving average if on."""
        return self.ema.module if self.ema is not None else self.generator

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        ema = {} if self.ema is None else {"generator_ema": self.ema.state_dict()}
        lecam = {} if self.lecam is None else {"lecam": self.lecam.state_dict()}
        return {
            **ema,
            **lecam,
            "train_config": self.cfg.model_dump(),
            "gan_config": self.gan_cfg.to_dict(),
            "signature": self.gan_cfg.signature.to_dict(),
            "epoch": self.epoch,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "dataset": self.dataset_info,
            "precision": self.precision.to_dict(),
            "torch_version": str(torch.__version__),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            if self.ema is not None:
                self.ema.load_state_dict(state["generator_ema"])
            if self.lecam is not None:
                self.lecam.load_state_dict(state["lecam"])
            self.rng.set_state(state["rng"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not fit this run's networks: {exc}") from exc
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    # --- one step --------------------------------------------------------------------------

    def _fake_labels(self, n: int) -> torch.Tensor:
        if self.sampler is not None:
            return self.sampler.fake_labels(n, self.rng)
        return torch.randint(
            0, self.gan_cfg.num_classes, (n,), device=self.device, generator=self.rng
        )

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.diffaugment, self.rng)

    def _train_step(
        self, real: torch.Tensor, labels: torch.Tensor, update_g: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One D update (and a G update if ``update_g``). Returns device tensors, no host sync."""
        n = real.shape[0]
        conditional = self.gan_cfg.conditional
        z = torch.randn(n, self.gan_cfg.latent_dim, device=self.device, generator=self.rng)
        fake_labels = self._fake_labels(n)
        g_labels = fake_labels if conditional else None
        d_labels = labels if conditional else None

        # (1) Update D.
        with self.precision.autocast(self.device):
            fake = self._g(z, g_labels)
            real_logits = self._d(self._augment(real), d_labels).float()
            fake_logits = self._d(self._augment(fake.detach()), g_labels).float()
        loss_d = self._loss_d(real_logits, fake_logits)
        if self.lecam is not None:
            loss_d = loss_d + self.cfg.lecam_weight * self.lecam(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        with torch.no_grad():
            d_stats = torch.stack(
                [
                    loss_d.detach(),
                    torch.sigmoid(real_logits).mean(),
                    torch.sigmoid(fake_logits).mean(),
                    ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2,
                    F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean(),
                ]
            )
        if not update_g:
            return d_stats, torch.zeros((), device=self.device)

        # (2) Update G.
        with self.precision.autocast(self.device):
            logits = self._d(self._augment(fake), g_labels).float()
        loss_g = self._loss_g(logits)
        if self.gsr is not None:
            loss_g = loss_g + self.cfg.gsr_weight * self.gsr(class_term(self.generator))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.generator)
        return d_stats, loss_g.detach()

    def _loss_d(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return discriminator_loss(self.cfg, real_logits, fake_logits)

    def _loss_g(self, logits: torch.Tensor) -> torch.Tensor:
        return generator_loss(self.cfg, logits)

    # --- epochs ----------------------------------------------------------------------------

    def fit(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        progress: bool = True,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        cfg = self.cfg
        x = to_device_images(images, self.device)
        y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(self.device)
        n = x.shape[0]
        batch = min(cfg.batch_size, n)
        steps = n // batch  # drop the ragged tail: static shapes, as compile and cuDNN like
        if steps < 1:
            raise UserError(f"need at least 2 training images, got {n}")
        log.info(
            "event=train_start device=%s precision=%s (%s) images=%d batch=%d "
            "steps_per_epoch=%d epochs=%d start_epoch=%d",
            self.device,
            self.precision.precision,
            self.precision.reason,
            n,
            batch,
            steps,
            cfg.epochs,
            self.epoch + 1,
        )
        real_spread = real_class_spread(images, labels, self.gan_cfg.num_classes)
        if cfg.sampling == "class-balanced":
            self.sampler = ClassBalancedSampler(y, self.gan_cfg.num_classes)
        if cfg.gsr_weight > 0:
            self.gsr = GroupSpectral(torch.bincount(y, minlength=self.gan_cfg.num_classes))
        self.generator.train()
        self.discriminator.train()
        while self.epoch < cfg.epochs:
            epoch = self.epoch + 1
            started = time.perf_counter()
            d_sum = torch.zeros(len(_D_STATS), device=self.device)
            g_sum = torch.zeros((), device=self.device)
            g_steps = 0
            perm = (
                self.sampler.real(steps * batch, self.rng)
                if self.sampler is not None
                else torch.randperm(n, device=self.device, generator=self.rng)
            )
            bar = tqdm(
                total=steps,
                desc=f"epoch {epoch}/{cfg.epochs}",
                disable=None if progress else True,
                leave=False,
            )
            for step in range(steps):
                idx = perm[step * batch : (step + 1) * batch]
                update_g = (step + 1) % cfg.d_steps == 0
                d_stats, loss_g = self._train_step(x[idx], y[idx], update_g)
                d_sum += d_stats
                g_sum += loss_g
                g_steps += int(update_g)
                bar.update(1)
                if (step + 1) % cfg.check_every == 0:
                    self._check_finite(d_sum, g_sum, epoch, step + 1)
                    means = (d_sum / (step + 1)).tolist()
                    bar.set_postfix(
                        loss_d=f"{means[0]:.3f}", d_x=f"{means[1]:.2f}", d_g_z=f"{means[2]:.2f}"
                    )
            bar.close()
            self._check_finite(d_sum, g_sum, epoch, steps)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - started
            record = dict(zip(_D_STATS, (d_sum / steps).tolist(), strict=True))
            record = {
                "epoch": epoch,
                **record,
                "loss_g": float(g_sum) / max(g_steps, 1),
                "seconds": seconds,
                "images_per_s": steps * batch / seconds,
            }
            self.epoch = epoch
            record["sample_diversity"], record["class_spread"] = self._write_samples(epoch)
            if self.gan_cfg.conditional:  # gSR's per-class norm, on or off: to compare
                with torch.no_grad():
                    record["class_sigma"] = group_sigma(class_term(self.generator)).tolist()
            check = (
                collapse_signals(record["d_g_z"], record["class_spread"], real_spread)
                if epoch * steps >= MIN_STEPS_TO_JUDGE
                else CollapseCheck(())  # an untrained G is flat too: not collapse, not yet
            )
            record["collapse_signals"] = list(check.signals)
            self.history.append(record)
            self._save()
            log.info(
                "event=epoch_end %s",
                " ".join(f"{k}={_fmt(v)}" for k, v in record.items() if not isinstance(v, list)),
            )
            if check.collapsed:
                log.warning(
                    "event=collapse_suspected epoch=%d %s (such a model is never promoted; %s)",
                    epoch,
                    "; ".join(check.signals),
                    collapse_advice(self.cfg),
                )
            if on_epoch is not None:
                on_epoch(record)

    def _check_finite(
        self, d_sum: torch.Tensor, g_sum: torch.Tensor, epoch: int, step: int
    ) -> None:
        if bool(torch.isfinite(d_sum).all()) and bool(torch.isfinite(g_sum)):
            return
        last = self.out_dir / CHECKPOINT_NAME
        kept = (
            f"the last good checkpoint {last} (epoch {self.epoch}) is kept"
            if last.exists()
            else "no checkpoint was written yet"
        )
        raise TrainingDiverged(
            f"a loss became NaN/inf in epoch {epoch} by step {step}; {kept}. "
            "Lower --lr-d/--lr-g, or try --precision fp32"
        )

    def _write_samples(self, epoch: int) -> tuple[float, list[float]]:
        """The epoch's sample grid from the served generator; its spread (run_files.py)."""
        return write_samples(
            self.served_generator,
            self.gan_cfg,
            self.cfg.sample_seed,
            self.device,
            self.out_dir,
            epoch,
        )

    def _save(self) -> None:
        save_run(
            self.out_dir,
            self.state_dict(),
            {
                "train_config": self.cfg.model_dump(),
                "dataset": self.dataset_info,
                "precision": self.precision.to_dict(),
                "history": self.history,
            },
        )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
