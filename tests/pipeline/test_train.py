"""The training loop on real MNIST subsets: checkpoints, resume, NaN stop, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pipeline.checkpoint import load_checkpoint, load_generator, save_checkpoint
from pipeline.data.loading import ImageDataset
from pipeline.ema import GeneratorEMA
from pipeline.errors import CheckpointError, TrainingDiverged
from pipeline.precision import decide
from pipeline.train import GANTrainer, train
from pipeline.train_config import TrainConfig

SMALL = {"limit": 512, "batch_size": 64, "g_width": 16, "d_width": 16, "check_every": 4}


def small(**overrides: object) -> TrainConfig:
    return TrainConfig(**{**SMALL, **overrides})  # type: ignore[arg-type]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_writes_checkpoint_metrics_and_samples(mnist: ImageDataset, tmp_path: Path) -> None:
    result = train(small(epochs=2), mnist, tmp_path, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]
    for key in (
        "loss_d",
        "loss_g",
        "d_x",
        "d_g_z",
        "d_accuracy",
        "minimax_value",
        "sample_diversity",
    ):
        assert all(isinstance(r[key], float) for r in result.history), key
    assert 0 < result.history[-1]["d_x"] < 1 and 0 < result.history[-1]["d_g_z"] < 1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["history"] == result.history
    assert metrics["precision"] == decide(torch.device("cpu")).to_dict()  # what it trained in
    assert metrics["dataset"]["md5"] == mnist.md5
    assert (tmp_path / "samples" / "epoch_001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "samples.png").exists()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2 and state["train_config"]["epochs"] == 2
    generator, cfg, _ = load_generator(tmp_path)
    assert cfg.g_width == 16 and not generator.training


@pytest.mark.parametrize("ema_decay", [0.0, 0.99])
def test_resume_equals_an_uninterrupted_run(
    mnist: ImageDataset, tmp_path: Path, ema_decay: float
) -> None:
    straight = train(small(epochs=2, ema_decay=ema_decay), mnist, tmp_path / "s", progress=False)
    train(small(epochs=1, ema_decay=ema_decay), mnist, tmp_path / "split", progress=False)
    resumed = train(
        small(epochs=2), mnist, tmp_path / "split", resume=tmp_path / "split", progress=False
    )
    assert_same_weights(straight.generator.state_dict(), resumed.generator.state_dict())
    assert straight.history == [
        {**r, "seconds": s["seconds"], "images_per_s": s["images_per_s"]}
        for r, s in zip(resumed.history, straight.history, strict=True)
    ]


def test_same_seed_same_run_different_seed_different_run(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    a = train(small(epochs=1, seed=3), mnist, tmp_path / "a", progress=False)
    b = train(small(epochs=1, seed=3), mnist, tmp_path / "b", progress=False)
    c = train(small(epochs=1, seed=4), mnist, tmp_path / "c", progress=False)
    assert_same_weights(a.generator.state_dict(), b.generator.state_dict())
    assert not torch.equal(
        a.generator.state_dict()["net.0.weight"], c.generator.state_dict()["net.0.weight"]
    )


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(small(epochs=1), mnist, run, progress=False)
    good = (run / "checkpoint.pt").read_bytes()
    poisoned = load_checkpoint(run / "checkpoint.pt")
    poisoned["discriminator"]["head.weight"].fill_(float("nan"))
    save_checkpoint(tmp_path / "poisoned.pt", poisoned)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf in epoch 2.*last good checkpoint"):
        train(small(epochs=3), mnist, run, resume=tmp_path / "poisoned.pt", progress=False)
    assert (run / "checkpoint.pt").read_bytes() == good


@pytest.mark.parametrize("arch,conditional", [("fc", True), ("dcgan", False)])
def test_other_architectures_and_options_train(
    mnist: ImageDataset, tmp_path: Path, arch: str, conditional: bool
) -> None:
    cfg = small(
        epochs=1,
        arch=arch,
        conditional=conditional,
        loss="bce",
        g_loss="minimax",
        d_steps=2,
        real_label=1.0,
        lr_g=1e-3,
        lr_d=5e-4,
        precision="fp32",
    )
    result = train(cfg, mnist, tmp_path, progress=False)
    assert result.history[0]["epoch"] == 1
    assert load_checkpoint(tmp_path)["gan_config"]["arch"] == arch


def test_hinge_loss_has_its_margins(tmp_path: Path) -> None:
    trainer = GANTrainer(small(loss="hinge"), tmp_path)
    confident = trainer._loss_d(torch.tensor([2.0, 1.0]), torch.tensor([-1.0, -3.0]))
    unsure = trainer._loss_d(torch.tensor([0.0, 0.5]), torch.tensor([0.0, -0.5]))
    assert confident.item() == 0.0  # beyond the margins D is not pushed further
    assert unsure.item() == pytest.approx((1.0 + 0.5) / 2 + (1.0 + 0.5) / 2)
    assert trainer._loss_g(torch.tensor([1.0, 3.0])).item() == -2.0
    bce = GANTrainer(small(loss="bce"), tmp_path)._loss_d(torch.tensor([0.0]), torch.tensor([0.0]))
    assert bce.item() == pytest.approx(2 * math.log(2))  # 0.9 smoothing leaves logit 0 at log 2


def test_hinge_and_spectral_norm_train_and_resume_exactly(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    options = {"loss": "hinge", "d_spectral_norm": True, "d_projection": True, "ema_decay": 0.9}
    straight = train(small(epochs=2, **options), mnist, tmp_path / "s", progress=False)
    train(small(epochs=1, **options), mnist, tmp_path / "split", progress=False)
    resumed = train(
        small(epochs=2), mnist, tmp_path / "split", resume=tmp_path / "split", progress=False
    )
    assert_same_weights(straight.generator.state_dict(), resumed.generator.state_dict())
    state = load_checkpoint(tmp_path / "s")
    assert state["train_config"]["loss"] == "hinge" and state["gan_config"]["d_spectral_norm"]
    assert any("parametrizations" in key for key in state["discriminator"])
    assert all(r["loss_d"] >= 0 and math.isfinite(r["loss_g"]) for r in straight.history)


def test_unsafe_or_corrupt_checkpoints_are_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save({"format_version": 1, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a dcgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_ema_generator_is_what_is_sampled_and_loaded(mnist: ImageDataset, tmp_path: Path) -> None:
    result = train(small(epochs=1, ema_decay=0.9), mnist, tmp_path, progress=False)
    state = load_checkpoint(tmp_path)
    ema = state["generator_ema"]
    assert ema["steps"] == 512 // 64 and ema["decay"] == 0.9
    # the average differs from the last step's weights, and it is what load_generator returns
    live, averaged = state["generator"], ema["module"]
    assert any(not torch.equal(live[k], averaged[k]) for k in live if live[k].is_floating_point())
    loaded, _, _ = load_generator(tmp_path)
    assert_same_weights(loaded.state_dict(), averaged)
    assert_same_weights(result.generator.state_dict(), averaged)
    # one steady step: with decay d, the average moves (1 - d) of the way to the new weights
    gen = torch.nn.Linear(2, 2)
    tracker = GeneratorEMA(gen, decay=0.5)
    tracker.steps = 1000  # past the warm-up
    tracker.update(gen)  # the first update copies
    before = tracker.module.weight.detach().clone()
    with torch.no_grad():
        gen.weight.add_(1.0)
    tracker.update(gen)
    assert torch.allclose(tracker.module.weight, before + 0.5)
