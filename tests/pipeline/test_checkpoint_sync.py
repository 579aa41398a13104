"""A retried training run resumes from the checkpoint mirrored to the store (local and S3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from models.registry import InvalidName, LocalStore, S3Store
from models.registry.store import ObjectStore
from pipeline.checkpoint import load_checkpoint
from pipeline.checkpoint_sync import CheckpointSync
from pipeline.data.loading import ImageDataset
from pipeline.train import train
from pipeline.train_config import TrainConfig
from tests.s3_server import S3TestServer

CFG = {"limit": 256, "batch_size": 64, "g_width": 8, "d_width": 8}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: S3TestServer = request.getfixturevalue("s3_server")
    return S3Store(request.getfixturevalue("s3_bucket"), server.settings())


def test_a_retried_run_resumes_from_the_store(
    mnist: ImageDataset, store: ObjectStore, tmp_path: Path
) -> None:
    sync = CheckpointSync(store, "cdcgan-mnist", "run-42")
    first_disk = tmp_path / "worker-a"
    assert sync.prepare_resume(first_disk) is None  # nothing anywhere yet: start fresh
    train(
        TrainConfig(epochs=1, **CFG),
        mnist,
        first_disk,
        on_epoch=sync.uploader(first_disk),
        progress=False,
    )
    assert store.stat(sync.key) is not None
    shutil.rmtree(first_disk)  # the worker died with its disk

    second_disk = tmp_path / "worker-b"
    resume = sync.prepare_resume(second_disk)
    assert resume == second_disk / "checkpoint.pt" and load_checkpoint(resume)["epoch"] == 1
    retried = train(
        TrainConfig(epochs=2, **CFG),
        mnist,
        second_disk,
        resume=resume,
        on_epoch=sync.uploader(second_disk),
        progress=False,
    )
    straight = train(TrainConfig(epochs=2, **CFG), mnist, tmp_path / "straight", progress=False)
    assert [r["epoch"] for r in retried.history] == [1, 2]
    for key, value in straight.generator.state_dict().items():
        assert torch.equal(value, retried.generator.state_dict()[key]), key
    remote = tmp_path / "remote.pt"
    assert sync.download(remote) and load_checkpoint(remote)["epoch"] == 2


def test_run_ids_are_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidName):
        CheckpointSync(LocalStore(tmp_path), "cdcgan-mnist", "run/../x")
