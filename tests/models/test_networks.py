"""Shapes, ranges and the generator signature of every architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.netconfig import GANConfig
from models.networks import build_discriminator, build_generator, weights_init


@pytest.mark.parametrize("arch", ["dcgan", "fc"])
@pytest.mark.parametrize("conditional", [True, False])
def test_generator_and_discriminator_shapes(arch: str, conditional: bool) -> None:
    cfg = GANConfig(arch=arch, conditional=conditional, g_width=8, d_width=8)  # type: ignore[arg-type]
    g, d = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    z = torch.randn(5, cfg.latent_dim)
    labels = torch.arange(5) if conditional else None
    images = g(z, labels)
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1  # tanh output
    logits = d(images, labels)
    assert logits.shape == (5,)
    probs = d.probability(images, labels)
    assert ((probs > 0) & (probs < 1)).all()


def test_conditional_generator_depends_on_the_label() -> None:
    g = build_generator(GANConfig(g_width=8)).eval()
    z = torch.randn(1, 100).repeat(10, 1)
    images = g(z, torch.arange(10))
    assert not torch.allclose(images[0], images[1])


def test_projection_discriminator_scores_the_class_through_the_projection() -> None:
    plain = build_discriminator(GANConfig(d_width=8)).eval()
    projected = build_discriminator(GANConfig(d_width=8, d_projection=True)).eval()
    projected.load_state_dict(plain.state_dict(), strict=False)  # same weights but the projection
    x = torch.randn(10, 1, 28, 28)
    labels = torch.arange(10)
    with torch.no_grad():
        features = plain.features(torch.cat([x, plain.embed(labels).view(-1, 1, 28, 28)], 1))
        want = plain(x, labels) + (projected.project(labels) * features.mean((2, 3))).sum(1)
        assert torch.allclose(projected(x, labels), want, atol=1e-6)
    unconditional = build_discriminator(GANConfig(conditional=False, d_projection=True))
    assert unconditional.project is None  # type: ignore[union-attr]


@pytest.mark.parametrize("arch", ["dcgan", "fc"])
def test_spectral_norm_bounds_every_discriminator_layer(arch: str) -> None:
    cfg = GANConfig(arch=arch, d_width=8, d_projection=True, d_spectral_norm=True)  # type: ignore[arg-type]
    d = build_discriminator(cfg).train()
    assert not any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in d.modules())
    x, labels = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    with torch.no_grad():
        for _ in range(30):  # each training-mode call refines the power iteration
            d(x, labels)
    d.eval()
    layers = [m for m in d.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if arch == "dcgan":
        layers.append(d.project)  # type: ignore[arg-type]
    for layer in layers:
        weight = layer.weight.detach().flatten(1)  # the normalised weight the forward pass uses
        sigma = torch.linalg.matrix_norm(weight, ord=2).item()
        assert abs(sigma - 1.0) < 0.05, (layer, sigma)


def test_conditional_nets_require_labels() -> None:
    g = build_generator(GANConfig(g_width=8))
    with pytest.raises(AssertionError, match="labels"):
        g(torch.randn(2, 100))


def test_signature_matches_the_network() -> None:
    cfg = GANConfig(latent_dim=32, g_width=8)
    sig = cfg.signature.to_dict()
    assert sig["inputs"] == {"z": ["N", 32], "labels": ["N"]}
    assert sig["output"] == {"images": ["N", 1, 28, 28]}
    unconditional = GANConfig(conditional=False).signature
    assert unconditional.input_names == ["z"]
    assert GANConfig.from_dict(cfg.to_dict()) == cfg


def test_dcgan_weight_init() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 4)
    bn = nn.BatchNorm2d(512)
    weights_init(conv)
    weights_init(bn)
    assert abs(conv.weight.std().item() - 0.02) < 0.002
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and bn.bias.abs().max() == 0


@pytest.mark.parametrize("bad", [{"arch": "resnet"}, {"latent_dim": 0}, {"image_size": 32}])
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GANConfig(**bad)  # type: ignore[arg-type]
