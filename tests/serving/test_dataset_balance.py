"""`dcgan balance PATH`: a skewed real MNIST subset in each format, balanced from the registry
model (no server) and from a live service, with the same bytes as POST /balance; bad datasets
stop with one line and change nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from models.datasets.recipe import GENERATED_LOSS_WEIGHT
from models.idx import idx_bytes
from models.registry import LocalStore, ModelRegistry
from models.registry.settings import RegistrySettings
from pipeline.data.loading import ImageDataset
from serving.api.app import create_app
from serving.core.errors import DatasetError, ServiceError
from serving.tools.client import DigitsClient
from serving.tools.dataset_balance import RegistrySource, ServiceSource, balance_dataset
from serving.tools.datasets import (
    CARD_NAME,
    METADATA_NAME,
    OWN_README_CARD_NAME,
    PENDING_NAME,
    TRAINED_ALGORITHMIC_MEDIA,
    Dataset,
    Format,
    read_dataset,
)
from tests.serving.conftest import FILTERED, MODEL, settings
from tests.serving.live import serving
from tests.test_cli import dcgan

COUNTS = [12, 12, 3, 12, 12, 12, 12, 0, 12, 12]  # digit 2 rare, digit 7 missing
SEED = 5


def skewed(mnist: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """Real test digits, COUNTS[k] of digit k, in class order."""
    picks = [np.flatnonzero(mnist.test_labels == k)[:n] for k, n in enumerate(COUNTS)]
    index = np.concatenate(picks)
    return mnist.test_images[index], mnist.test_labels[index].astype(np.int64)


def write_imagefolder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(root / str(label) / f"real-{i:04d}.png")
    return root


def write_npz(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    root.mkdir(parents=True)
    np.savez(root / "skewed.npz", images=images, labels=labels)
    return root / "skewed.npz"


def write_idx(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    root.mkdir(parents=True)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return root / "train-images-idx3-ubyte.gz"


def _hf_dataset(images: np.ndarray, labels: np.ndarray) -> datasets.Dataset:
    """What the Hub's MNIST holds: an Image column of PNG bytes and a ClassLabel."""
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(k) for k in range(10)])}
    )
    rows = {"image": [Image.fromarray(pixels, mode="L") for pixels in images], "label": labels}
    return datasets.Dataset.from_dict(rows, features=features)


def write_parquet(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    root.mkdir(parents=True)
    _hf_dataset(images, labels).to_parquet(str(root / "train-00000-of-00001.parquet"))
    return root / "train-00000-of-00001.parquet"


def write_saved(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    _hf_dataset(images, labels).save_to_disk(str(root))
    return root


WRITERS: dict[Format, Callable[[Path, np.ndarray, np.ndarray], Path]] = {
    Format.IMAGEFOLDER: write_imagefolder,
    Format.NPZ: write_npz,
    Format.IDX: write_idx,
    Format.PARQUET: write_parquet,
    Format.HF_DISK: write_saved,
}
DIRECTORY_FORMATS = {Format.IMAGEFOLDER, Format.HF_DISK}  # the output is --out itself


def tree_digest(path: Path) -> str:
    root = path if path.is_dir() else path.parent
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + file.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def registry_source(registry: ModelRegistry, registry_dir: Path) -> Iterator[RegistrySource]:
    where = RegistrySettings(_env_file=None, uri=str(registry_dir), model_name=MODEL)  # type: ignore[call-arg]
    with RegistrySource("production", where) as source:
        yield source


@pytest.fixture
def url(registry: ModelRegistry, tmp_path: Path) -> Iterator[str]:
    with serving(create_app(settings(), registry, cache_dir=tmp_path / "cache")) as base:
        yield base


@pytest.mark.parametrize("fmt", list(Format))
def test_each_format_is_balanced_from_the_registry_with_the_services_bytes(
    fmt: Format, mnist: ImageDataset, tmp_path: Path, registry_source: RegistrySource, url: str
) -> None:
    images, labels = skewed(mnist)
    path = WRITERS[fmt](tmp_path / "skewed", images, labels)
    before = tree_digest(path)
    out = tmp_path / "balanced"

    result = balance_dataset(path, out, registry_source, seed=SEED)

    assert result.before == COUNTS and result.added == [12 - n for n in COUNTS]
    balanced = read_dataset(out if fmt in DIRECTORY_FORMATS else out / _name(path))
    assert balanced.format is fmt and balanced.counts(10) == [12] * 10
    # What the service answers for the same counts and seed, byte for byte.
    with DigitsClient(url) as client:
        served = client.balance(COUNTS, seed=SEED)
    generated = balanced.images[_generated_rows(balanced, len(images))]
    np.testing.assert_array_equal(generated, served.images)
    if fmt is not Format.IMAGEFOLDER:  # the source's images first, unchanged
        np.testing.assert_array_equal(balanced.images[: len(images)], images)
    rows = [json.loads(line) for line in (out / METADATA_NAME).read_text().splitlines()]
    assert len(rows) == sum(result.added)
    assert {(r["model"], r["version"], r["seed"]) for r in rows} == {(MODEL, "v1", SEED)}
    assert {(r["synthetic"], r["loss_weight"]) for r in rows} == {(True, GENERATED_LOSS_WEIGHT)}
    card = (out / CARD_NAME).read_text()
    assert "machine-generated" in card and card_counts(card) == (COUNTS, [12] * 10)
    assert "## How to train on this" in card
    assert tree_digest(path) == before  # the source is untouched

    # Its own output lacks nothing: balancing it again writes nothing.
    again = balance_dataset(
        out if fmt in DIRECTORY_FORMATS else out / _name(path), tmp_path / "again", registry_source
    )
    assert again.out is None and not (tmp_path / "again").exists()


def card_counts(card: str) -> tuple[list[int], list[int]]:
    """The card's table: real images per class (before filling) and images after filling; each
    row's generated column checked to be their difference."""
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", card, re.MULTILINE)
    assert [int(row[0]) for row in rows] == list(range(10)), card
    assert all(int(r) + int(g) == int(a) for _, r, g, a in rows), card
    return [int(row[1]) for row in rows], [int(row[3]) for row in rows]


def _name(path: Path) -> str:
    return path.name.removesuffix(".gz")


def _generated_rows(dataset: Dataset, real: int) -> np.ndarray | slice:
    """Where the generated images are in a balanced dataset as read back: after the real ones
    in npz and IDX; in an ImageFolder, read in file-name order per class, dcgan-* first."""
    if dataset.format is not Format.IMAGEFOLDER:
        return slice(real, None)
    names = sorted((p.parent.name, p.name) for p in dataset.path.rglob("*.png"))
    return np.asarray([i for i, (_, name) in enumerate(names) if name.startswith("dcgan-")])


def test_generated_pngs_say_what_made_them(
    mnist: ImageDataset, tmp_path: Path, registry_source: RegistrySource
) -> None:
    images, labels = skewed(mnist)
    path = write_imagefolder(tmp_path / "skewed", images, labels)
    balance_dataset(path, tmp_path / "out", registry_source, seed=SEED)
    (png,) = sorted((tmp_path / "out" / "7").glob("dcgan-*.png"))[:1]
    with Image.open(png) as image:
        assert image.mode == "L" and image.size == (28, 28)
        text = image.text  # type: ignore[attr-defined]
    assert text["DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert TRAINED_ALGORITHMIC_MEDIA in text["XML:com.adobe.xmp"]
    assert (text["dcgan:model"], text["dcgan:version"]) == (MODEL, "v1")


def test_the_service_source_filters(mnist: ImageDataset, tmp_path: Path, url: str) -> None:
    images, labels = skewed(mnist)
    path = write_npz(tmp_path / "skewed", images, labels)
    result = balance_dataset(path, tmp_path / "out", ServiceSource(url), seed=SEED)
    assert result.provenance is not None and result.provenance.source == url
    assert read_dataset(tmp_path / "out" / "skewed.npz").counts(10) == [12] * 10


def test_the_registry_source_filters_with_the_services_bytes(
    mnist: ImageDataset, tmp_path: Path, filtering_registry: Path
) -> None:
    """Without a server, --min-confidence runs the same digit service and classifier.onnx as
    POST /balance: the same images, each its first accepted candidate (issue 31, item 1)."""
    registry_dir = tmp_path / "registry"
    shutil.copytree(filtering_registry, registry_dir)
    registry = ModelRegistry(LocalStore(registry_dir), MODEL)
    images, labels = skewed(mnist)
    path = write_npz(tmp_path / "skewed", images, labels)
    app = create_app(settings(), registry, cache_dir=tmp_path / "cache")
    with serving(app) as base, DigitsClient(base) as client:
        unfiltered = client.balance(COUNTS, seed=SEED)
        # The strictest of these that the fixture's tiny generator meets within the cap.
        for threshold in (0.5, 0.3, 0.2, 0.1, 0.05):
            try:
                served = client.balance(COUNTS, seed=SEED, min_confidence=threshold)
                break
            except ServiceError as refused:
                assert refused.status == 422 and "no candidate" in str(refused)
        else:
            pytest.fail("no threshold of 0.05 or more is met: the fixture model is broken")
    # The filter did something: some image is not its unfiltered candidate.
    assert (served.images != unfiltered.images).any()
    where = RegistrySettings(_env_file=None, uri=str(registry_dir), model_name=MODEL)  # type: ignore[call-arg]
    with RegistrySource("production", where) as source:
        result = balance_dataset(
            path, tmp_path / "out", source, seed=SEED, min_confidence=threshold
        )
    assert result.provenance is not None and result.provenance.min_confidence == threshold
    assert result.provenance.version == FILTERED
    balanced = read_dataset(tmp_path / "out" / "skewed.npz")
    np.testing.assert_array_equal(balanced.images[len(images) :], served.images)


def test_a_registry_version_without_its_classifier_cannot_filter(
    mnist: ImageDataset, tmp_path: Path, registry_dir: Path
) -> None:
    images, labels = skewed(mnist)
    path = write_npz(tmp_path / "skewed", images, labels)
    env = {"DCGAN_REGISTRY_URI": str(registry_dir), "DCGAN_REGISTRY_MODEL_NAME": MODEL}
    done = dcgan("balance", str(path), "--min-confidence", "0.9", env=env)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "published without its evaluation classifier" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "skewed-balanced").exists()


def _rgb(root: Path) -> None:
    (root / "3").mkdir(parents=True)
    Image.new("RGB", (28, 28)).save(root / "3" / "a.png")


def _big(root: Path) -> None:
    (root / "3").mkdir(parents=True)
    Image.new("L", (32, 32)).save(root / "3" / "a.png")


def _mixed(root: Path) -> None:
    (root / "3").mkdir(parents=True)
    Image.new("L", (28, 28)).save(root / "3" / "a.png")
    Image.new("L", (28, 27)).save(root / "3" / "b.png")


def _unknown_label(root: Path) -> None:
    (root / "cat").mkdir(parents=True)
    Image.new("L", (28, 28)).save(root / "cat" / "a.png")


def _npz_without_labels(root: Path) -> None:
    root.mkdir(parents=True)
    np.savez(root / "data.npz", images=np.zeros((3, 28, 28), np.uint8))


def _npz_label_out_of_range(root: Path) -> None:
    root.mkdir(parents=True)
    np.savez(root / "data.npz", images=np.zeros((3, 28, 28), np.uint8), labels=[1, 2, 10])


def _parquet_without_labels(root: Path) -> None:
    root.mkdir(parents=True)
    table = {"image": [Image.new("L", (28, 28))]}
    rows = datasets.Dataset.from_dict(
        table, features=datasets.Features({"image": datasets.Image()})
    )
    rows.to_parquet(str(root / "data.parquet"))


@pytest.mark.parametrize(
    ("make", "name", "message"),
    [
        (_rgb, "", "mode RGB, not 8-bit grayscale"),
        (_big, "", "images are (32, 32), the model makes 28x28"),
        (_mixed, "", "images are (27, 28), the model makes 28x28"),  # each checked on its own
        (_unknown_label, "", "unknown label folder 'cat'"),
        (_npz_without_labels, "data.npz", "needs arrays 'images' and 'labels'"),
        (_npz_label_out_of_range, "data.npz", "unknown label 10"),
        (_parquet_without_labels, "data.parquet", "needs one image column and one label column"),
    ],
)
def test_a_bad_dataset_stops_with_one_line_and_changes_nothing(
    make: Callable[[Path], None],
    name: str,
    message: str,
    tmp_path: Path,
    registry_dir: Path,
) -> None:
    root = tmp_path / "bad"
    make(root)
    before = tree_digest(root / name if name else root)
    out = tmp_path / "out"
    env = {"DCGAN_REGISTRY_URI": str(registry_dir), "DCGAN_REGISTRY_MODEL_NAME": MODEL}
    done = dcgan("balance", str(root / name if name else root), "--out", str(out), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    # One error line (a registry warning may precede it: this test registry is unsigned).
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    assert tree_digest(root / name if name else root) == before


def test_an_existing_output_is_never_overwritten(
    mnist: ImageDataset, tmp_path: Path, registry_source: RegistrySource
) -> None:
    images, labels = skewed(mnist)
    path = write_npz(tmp_path / "skewed", images, labels)
    (tmp_path / "out").mkdir()
    with pytest.raises(DatasetError, match="exists"):
        balance_dataset(path, tmp_path / "out", registry_source, seed=SEED)
    assert list((tmp_path / "out").iterdir()) == []


def test_in_place_keeps_the_users_readme_and_metadata_and_adds_nothing_twice(
    mnist: ImageDataset, tmp_path: Path, registry_source: RegistrySource
) -> None:
    images, labels = skewed(mnist)
    root = write_imagefolder(tmp_path / "digits", images, labels)
    (root / "README.md").write_text("# my digits\n")
    own = {"file_name": "0/real-0000.png", "label": 0, "note": "mine"}
    (root / METADATA_NAME).write_text(json.dumps(own) + "\n")

    result = balance_dataset(root, tmp_path / "unused", registry_source, seed=SEED, in_place=True)

    assert result.out == root and not (tmp_path / "unused").exists()
    assert read_dataset(root).counts(10) == [12] * 10
    assert (root / "README.md").read_text() == "# my digits\n"
    assert "machine-generated" in (root / OWN_README_CARD_NAME).read_text()
    rows = [json.loads(line) for line in (root / METADATA_NAME).read_text().splitlines()]
    assert rows[0] == own and len(rows) == 1 + sum(result.added)
    assert all(r["synthetic"] and r["loss_weight"] == GENERATED_LOSS_WEIGHT for r in rows[1:])
    assert card_counts((root / OWN_README_CARD_NAME).read_text())[0] == COUNTS
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no staging left
    again = balance_dataset(root, tmp_path / "unused", registry_source, in_place=True)
    assert again.out is None and read_dataset(root).counts(10) == [12] * 10


def test_an_interrupted_in_place_run_is_finished_by_the_next(
    mnist: ImageDataset,
    tmp_path: Path,
    registry_source: RegistrySource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images, labels = skewed(mnist)
    root = write_imagefolder(tmp_path / "digits", images, labels)
    moves = 0
    real_replace = os.replace

    def dies_after_five(src: str, dst: str, **dir_fds: int) -> None:
        nonlocal moves
        if str(src).startswith("dcgan-"):  # a move out of the committed change (not the cache)
            moves += 1
            if moves > 5:
                raise KeyboardInterrupt  # the process killed while moving files into place
        real_replace(src, dst, **dir_fds)

    monkeypatch.setattr("serving.tools.dataset_journal.os.replace", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        balance_dataset(root, tmp_path / "unused", registry_source, seed=SEED, in_place=True)
    monkeypatch.undo()
    assert (root / PENDING_NAME).is_dir()  # committed, not finished
    # The pending files are hidden from readers: the dataset reads as 5 images further along.
    assert sum(read_dataset(root).counts(10)) == sum(COUNTS) + 5

    done = balance_dataset(root, tmp_path / "unused", registry_source, seed=SEED, in_place=True)

    assert done.finished_interrupted and done.out is None  # finishing balanced it
    assert read_dataset(root).counts(10) == [12] * 10 and not (root / PENDING_NAME).exists()
    rows = (root / METADATA_NAME).read_text().splitlines()
    assert len(rows) == sum(12 - n for n in COUNTS)


def test_in_place_is_for_imagefolders_only(
    mnist: ImageDataset, tmp_path: Path, registry_dir: Path
) -> None:
    images, labels = skewed(mnist)
    path = write_npz(tmp_path / "skewed", images, labels)
    env = {"DCGAN_REGISTRY_URI": str(registry_dir), "DCGAN_REGISTRY_MODEL_NAME": MODEL}
    done = dcgan("balance", str(path), "--in-place", env=env)
    assert done.returncode == 2
    assert "--in-place adds to ImageFolder datasets only" in done.stderr, done.stderr
    assert sorted(p.name for p in path.parent.iterdir()) == ["skewed.npz"]


def test_a_balance_run_writes_the_training_recipe_and_counts_only_real_images_as_real(
    mnist: ImageDataset, tmp_path: Path, registry_dir: Path
) -> None:
    """`dcgan balance` as a user runs it: every generated row is marked synthetic with its loss
    weight, and the card gives the real counts and how to train on them. Balanced again, a copy
    written before rows carried the recipe's fields gets them, and its generated images are
    still not counted as real."""
    images, labels = skewed(mnist)
    path = write_imagefolder(tmp_path / "skewed", images, labels)
    env = {"DCGAN_REGISTRY_URI": str(registry_dir), "DCGAN_REGISTRY_MODEL_NAME": MODEL}
    first = tmp_path / "balanced"
    done = dcgan("balance", str(path), "--out", str(first), "--seed", str(SEED), env=env)
    assert done.returncode == 0, done.stderr

    rows = [json.loads(line) for line in (first / METADATA_NAME).read_text().splitlines()]
    assert len(rows) == sum(12 - n for n in COUNTS)
    assert all(r["synthetic"] is True and r["loss_weight"] == GENERATED_LOSS_WEIGHT for r in rows)
    assert {r["digital_source_type"] for r in rows} == {"trainedAlgorithmicMedia"}  # kept
    card = (first / CARD_NAME).read_text()
    assert card_counts(card) == (COUNTS, [12] * 10)
    recipe = card[card.index("## How to train on this") :]
    assert "logit-adjusted loss" in recipe and "Menon et al. 2021" in recipe
    assert "logits + log_prior" in recipe and "loss_weight" in recipe
    assert f"torch.tensor([{', '.join(map(str, COUNTS))}]" in recipe  # the real prior
    assert str(tmp_path) not in card

    # A copy balanced before the recipe's fields existed: its rows without them.
    old = [{k: v for k, v in r.items() if k not in ("synthetic", "loss_weight")} for r in rows]
    (first / METADATA_NAME).write_text("".join(json.dumps(r) + "\n" for r in old))
    again = tmp_path / "again"
    args = ("--out", str(again), "--seed", str(SEED + 1), "--target", "15")
    done = dcgan("balance", str(first), *args, env=env)
    assert done.returncode == 0, done.stderr

    rows = [json.loads(line) for line in (again / METADATA_NAME).read_text().splitlines()]
    assert len(rows) == sum(15 - n for n in COUNTS)  # the earlier rows and 3 more per class
    assert all(r["synthetic"] is True and r["loss_weight"] == GENERATED_LOSS_WEIGHT for r in rows)
    assert card_counts((again / CARD_NAME).read_text()) == (COUNTS, [15] * 10)
