"""Build a generator/discriminator pair from a GANConfig, with DCGAN weight init."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from models.dcgan import DCGANDiscriminator, DCGANGenerator
from models.fc import FCDiscriminator, FCGenerator
from models.netconfig import GANConfig


def weights_init(module: nn.Module) -> None:
    """DCGAN init (Radford et al. 2015): conv/linear weights N(0, 0.02), batch norm N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_generator(cfg: GANConfig) -> nn.Module:
    net: nn.Module = DCGANGenerator(cfg) if cfg.arch == "dcgan" else FCGenerator(cfg)
    net.apply(weights_init)
    return net


def build_discriminator(cfg: GANConfig) -> nn.Module:
    net: nn.Module = DCGANDiscriminator(cfg) if cfg.arch == "dcgan" else FCDiscriminator(cfg)
    net.apply(weights_init)
    if cfg.d_spectral_norm:
        _spectral_normalise(net)
    return net


def _spectral_normalise(net: nn.Module) -> None:
    """Every weight layer of D, the projection embedding included (not the label inputs: they
    are looked up, not multiplied, so they do not bound D's slope)."""
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.Conv2d | nn.Linear) or name == "project":
            spectral_norm(module)
