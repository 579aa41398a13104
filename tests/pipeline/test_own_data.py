"""Training on the user's own data (issue 30, item 1): every format `dcgan balance` reads, read by
the same code, identified by its content, split for evaluation, its class names carried through."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from models.datasets.readers import Format
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.data.own import CONTENT_KEY, HOLDOUT_SHARE, content_sha256, holdout_split
from pipeline.errors import CheckpointError
from pipeline.train import train
from pipeline.train_config import TrainConfig
from tests.serving.test_dataset_balance import WRITERS
from tests.test_cli import dcgan

COUNTS = [30, 30, 30, 30, 30, 4, 4, 2, 1, 0]  # skewed, one class with a single image, one empty


def own_images(mnist: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """Real test digits, COUNTS[k] of digit k, in class order (as an ImageFolder lists them)."""
    picks = [np.flatnonzero(mnist.test_labels == k)[:n] for k, n in enumerate(COUNTS)]
    index = np.concatenate(picks)
    return mnist.test_images[index], mnist.test_labels[index].astype(np.int64)


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_balance_format_trains_as_the_same_data(
    fmt: Format, mnist: ImageDataset, tmp_path: Path
) -> None:
    images, labels = own_images(mnist)
    path = WRITERS[fmt](tmp_path / "data", images, labels)
    ds = load_dataset("my-digits", str(path))
    assert ds.name == "my-digits"
    assert ds.md5 == {CONTENT_KEY: content_sha256(images, labels)}  # the same in every format
    assert ds.holdout is not None and ds.holdout["format"] == fmt.value
    # The held-out part is the stratified share of each class with two or more images.
    held = np.bincount(ds.test_labels, minlength=10)
    want = [0 if n < 2 else max(1, round(HOLDOUT_SHARE * n)) for n in COUNTS]
    assert held.tolist() == want
    assert (np.bincount(ds.train_labels, minlength=10) + held).tolist() == COUNTS
    together = np.concatenate([ds.train_images, ds.test_images])
    assert sorted(map(bytes, together)) == sorted(map(bytes, images))  # nothing lost or added


def test_an_evaluation_states_what_each_part_learnt_from(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    """The report's boundary: the user's held-out part is what is scored; a generator whose
    checkpoint records other data is said to, not assumed to have been held out of it."""
    from pipeline.evaluation.run import evaluation_boundary

    images, labels = own_images(mnist)
    np.savez(tmp_path / "mine.npz", images=images, labels=labels)
    own = load_dataset("my-digits", str(tmp_path / "mine.npz"))
    recorded = {"name": "my-digits", "md5": own.md5, "limit": None}
    held = evaluation_boundary(recorded, own)
    assert held["same_data"] and held["scored_on"] == "held-out part"
    assert held["statement"].startswith("the generator learnt only from my-digits's training part")
    assert f"on the held-out part ({len(own.test_labels)} images)" in held["statement"]
    for other in ({"name": "mnist", "md5": mnist.md5, "limit": None}, None):
        unknown = evaluation_boundary(other, own)
        assert not unknown["same_data"]
        assert "nothing here shows it never saw" in unknown["statement"]
    public = evaluation_boundary({"name": "mnist", "md5": mnist.md5, "limit": 256}, mnist)
    assert "a 256-image subset of mnist's training split" in public["statement"]
    assert public["scored_on"] == "test split"


def test_class_names_come_from_a_class_label(mnist: ImageDataset, tmp_path: Path) -> None:
    images, labels = own_images(mnist)
    names = [f"kind-{k}" for k in range(10)]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    rows = {"image": [Image.fromarray(p, mode="L") for p in images], "label": labels}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "hf"))
    assert load_dataset("kinds", str(tmp_path / "hf")).class_names == tuple(names)
    folder = WRITERS[Format.IMAGEFOLDER](tmp_path / "folder", images, labels)
    assert load_dataset("kinds", str(folder)).class_names == tuple(str(k) for k in range(10))


@given(st.lists(st.integers(0, 40), min_size=10, max_size=10), st.permutations(range(10)))
def test_the_holdout_is_stratified_and_depends_only_on_the_labels(
    counts: list[int], order: list[int]
) -> None:
    labels = np.repeat(np.asarray(order), [counts[k] for k in order])
    train_idx, held_idx = holdout_split(labels)
    assert not set(train_idx) & set(held_idx)
    assert len(train_idx) + len(held_idx) == len(labels)
    for k in range(10):
        held = int((labels[held_idx] == k).sum())
        assert held == (0 if counts[k] < 2 else max(1, round(HOLDOUT_SHARE * counts[k])))
    again = holdout_split(labels)
    np.testing.assert_array_equal(again[1], held_idx)


def test_train_records_the_content_and_refuses_to_resume_on_other_data(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    images, labels = own_images(mnist)
    path = WRITERS[Format.NPZ](tmp_path / "data", images, labels)
    ds = load_dataset("my-digits", str(path))
    cfg = TrainConfig(
        dataset="my-digits", data=str(path), epochs=1, batch_size=32, g_width=8, d_width=8
    )
    result = train(cfg, ds, tmp_path / "run", progress=False)
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["dataset"]["md5"] == ds.md5
    assert state["dataset"]["name"] == "my-digits"
    assert state["dataset"]["class_names"] == [str(k) for k in range(10)]
    assert state["dataset"]["holdout"]["held_out_images"] == len(ds.test_labels)
    # One image changed: other data, so the checkpoint is not resumed on it.
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    other = WRITERS[Format.NPZ](tmp_path / "other", changed, labels)
    with pytest.raises(CheckpointError, match="different data"):
        train(
            cfg.model_copy(update={"epochs": 2}),
            load_dataset("my-digits", str(other)),
            tmp_path / "run",
            resume=result.checkpoint,
            progress=False,
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{folder}"], "does not hold the published mnist files"),
        (["--dataset", "Mine!", "--data", "{folder}"], "a name of your own data"),
        (["--dataset", "mine"], "for your own data give its files with --data PATH"),
        (["--dataset", "mine", "--data", "{tmp}/absent"], "no such file or directory"),
        (["--dataset", "mine", "--data", "{one}"], "too few to train on"),
        (["--dataset", "mine", "--data", "{big}"], "the model makes 28x28"),
    ],
)
def test_train_refuses_bad_own_data_in_one_line(
    args: list[str], message: str, mnist: ImageDataset, tmp_path: Path
) -> None:
    images, labels = own_images(mnist)
    folder = WRITERS[Format.IMAGEFOLDER](tmp_path / "folder", images, labels)
    one = WRITERS[Format.NPZ](tmp_path / "one", images[:1], labels[:1])
    big = WRITERS[Format.NPZ](tmp_path / "big", np.zeros((4, 32, 32), np.uint8), np.arange(4))
    filled = [a.format(folder=folder, tmp=tmp_path, one=one, big=big) for a in args]
    result = dcgan("train", *filled, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "run").exists()
