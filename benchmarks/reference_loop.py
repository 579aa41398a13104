"""The reference: a training loop in the style of the classic PyTorch DCGAN example.

Same networks, recipe, batch size and seed as our trainer; what differs is the engineering the
classic example uses: a per-sample Dataset (PIL image -> ToTensor -> Normalize) behind a
shuffling DataLoader, fp32, and ``.item()`` on five statistics every step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from models.networks import build_discriminator, build_generator
from pipeline.train_config import TrainConfig


class PerSampleMNIST(Dataset[tuple[torch.Tensor, int]]):
    """What torchvision's MNIST + ToTensor + Normalize((0.5,), (0.5,)) do, one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="L")
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]  # ToTensor
        return (x - 0.5) / 0.5, int(self.labels[index])  # Normalize


class ReferenceLoop:
    def __init__(
        self, cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, device: torch.device
    ) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.device = device
        self.gan_cfg = cfg.gan_config()
        self.netG = build_generator(self.gan_cfg).to(device)
        self.netD = build_discriminator(self.gan_cfg).to(device)
        self.optG = torch.optim.Adam(
            self.netG.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2)
        )
        self.optD = torch.optim.Adam(
            self.netD.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2)
        )
        self.loader = DataLoader(
            PerSampleMNIST(images, labels), batch_size=cfg.batch_size, shuffle=True, num_workers=0
        )
        self.log: list[tuple[float, ...]] = []

    def run_epoch(self, max_steps: int | None = None) -> int:
        """One pass over the loader (or ``max_steps``); returns the number of images seen."""
        seen = 0
        for i, (real, labels) in enumerate(self.loader):
            if max_steps is not None and i >= max_steps:
                break
            real, labels = real.to(self.device), labels.to(self.device)
            b = real.size(0)
            fake_labels = torch.randint(0, 10, (b,), device=self.device)
            # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
            self.netD.zero_grad()
            output = self.netD(real, labels)
            errD_real = F.binary_cross_entropy_with_logits(
                output, torch.full((b,), self.cfg.real_label, device=self.device)
            )
            errD_real.backward()
            D_x = torch.sigmoid(output).mean().item()
            noise = torch.randn(b, self.gan_cfg.latent_dim, device=self.device)
            fake = self.netG(noise, fake_labels)
            output = self.netD(fake.detach(), fake_labels)
            errD_fake = F.binary_cross_entropy_with_logits(
                output, torch.zeros(b, device=self.device)
            )
            errD_fake.backward()
            D_G_z1 = torch.sigmoid(output).mean().item()
            errD = errD_real + errD_fake
            self.optD.step()
            # (2) Update G network: maximize log(D(G(z)))
            self.netG.zero_grad()
            output = self.netD(fake, fake_labels)
            errG = F.binary_cross_entropy_with_logits(output, torch.ones(b, device=self.device))
            errG.backward()
            D_G_z2 = torch.sigmoid(output).mean().item()
            self.optG.step()
            self.log.append((errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
            seen += b
        return seen
