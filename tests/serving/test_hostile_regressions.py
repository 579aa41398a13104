"""One test per finding of 2026-12-06 (issue 29, item 3): each failed on the code before the fix.
They import only what that code had, so they run against it unchanged. The decompression bombs
run `dcgan balance` as a child process and read that child's own peak RSS (wait4)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from models.registry import LocalStore, ModelRegistry
from serving.api.app import create_app
from tests.serving.conftest import MODEL
from tests.serving.conftest import settings as serve_settings
from tests.serving.hostile import (
    SECRET,
    Scene,
    build,
    evil_saved,
    idx_gzip_bomb,
    npy_bytes,
    npy_claiming,
    npz_bomb,
    png,
    png_bomb,
    run_cli,
    snapshot,
    write_npz,
)
from tests.serving.live import serving

PENDING = (
    ".dcgan-balance-pending"  # the in-place journal's directory (serving/tools/dataset_journal.py)
)
SKEWED = [2, 2, 1, 2, 2, 2, 2, 2, 2, 2]
EVEN = [1] * 10


@pytest.fixture(scope="module")
def url(published_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    registry = ModelRegistry(LocalStore(published_registry), MODEL)
    cache_dir = tmp_path_factory.mktemp("regression-cache")
    with serving(create_app(serve_settings(), registry, cache_dir=cache_dir)) as base:
        yield base


def balance(scene: Scene, url: str, *args: str) -> tuple[int, str]:
    """Run `dcgan balance` on the scene; (exit code, stderr), stderr asserted to be one error
    line when the code is 2."""
    code, _, stderr = run_cli("balance", str(scene.path), "--url", url, "--seed", "1", *args)
    if code == 2:
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return code, stderr


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# --- finding 1: --in-place replayed any journal found in the dataset, through links ----------


def _journal(root: Path, files: dict[str, bytes], identity: dict[str, int] | None) -> None:
    """A pending journal in ``root``: ``files`` staged, and (``identity`` given) the record the
    command writes: format, this directory's device and inode, the files' sha256."""
    staged = root / ".staged"
    for rel, data in files.items():
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        (staged / rel).write_bytes(data)
    if identity is not None:
        hashes = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
        record = {"format": "dcgan-balance-journal/1", "dataset": identity, "files": hashes}
        (staged / "journal.json").write_text(json.dumps(record))
    staged.rename(root / PENDING)


@pytest.mark.parametrize("identity", [False, True], ids=["shipped", "guessed-identity"])
def test_in_place_never_replays_a_journal_through_a_link(
    identity: bool, tmp_path: Path, url: str
) -> None:
    scene = build(tmp_path, "imagefolder", EVEN)
    shutil.rmtree(scene.data / "3")
    os.symlink(scene.outside / "victim", scene.data / "3")  # 3/ is the victim's directory
    st = os.stat(scene.data)
    who = {"device": st.st_dev, "inode": st.st_ino} if identity else None
    _journal(scene.data, {"3/dcgan-v1-1-000000.png": png(), "3/keep.png": png()}, who)
    outside = snapshot(scene.outside)

    code, stderr = balance(scene, url, "--in-place")

    assert code == 2, stderr
    assert snapshot(scene.outside) == outside  # nothing replaced elsewhere on the machine


def test_in_place_finishes_only_its_own_journal(tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    _journal(scene.data, {"2/dcgan-v1-1-000000.png": png()}, None)  # no record: not ours
    code, stderr = balance(scene, url, "--in-place")
    assert code == 2 and PENDING in stderr, stderr
    assert (scene.data / PENDING / "2" / "dcgan-v1-1-000000.png").exists()  # left as found


# --- finding 2: --out copied what links point to ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [("notes.txt", "secret"), ("3/leak.png", "keep"), ("loop", ".."), ("4/b.png", "inside")],
)
def test_out_never_follows_a_link(name: str, target: str, tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    where = scene.data / name
    where.parent.mkdir(exist_ok=True)
    points = {
        "secret": scene.outside / "secret.txt",
        "keep": scene.outside / "victim" / "keep.png",
        "..": Path(".."),
        "inside": next((scene.data / "3").iterdir()),
    }
    os.symlink(points[target], where)
    source = snapshot(scene.data)

    code, stderr = balance(scene, url, "--out", str(scene.out))

    assert code == 2 and "symbolic link" in stderr and name.split("/")[-1] in stderr, stderr
    assert not scene.out.exists() and snapshot(scene.data) == source


def test_out_refuses_a_fifo_instead_of_waiting_on_it(tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    os.mkfifo(scene.data / "3" / "pipe.png")
    code, stderr = balance(scene, url, "--out", str(scene.out))
    assert code == 2 and "FIFO" in stderr, stderr


# --- finding 3: state.json could name arrow files outside the dataset ------------------------


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_save_to_disk_reads_no_data_file_outside(how: str, tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "hf-disk", SKEWED)
    evil = scene.outside / "evil" / next(n for n in evil_saved() if n.endswith(".arrow"))
    state = json.loads((scene.data / "state.json").read_text())
    named = os.path.relpath(evil, scene.data) if how == "relative" else str(evil)
    state["_data_files"].append({"filename": named})
    (scene.data / "state.json").write_text(json.dumps(state))

    code, stderr = balance(scene, url, "--out", str(scene.out))

    assert code == 2 and "inside the dataset" in stderr, stderr
    assert not scene.out.exists() and not files_holding(tmp_path / "out", SECRET)


# --- finding 4: a killed run's leftovers stayed; a half-finished journal was copied ----------


def test_a_killed_runs_staging_is_removed_and_a_live_ones_kept(tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    dead, live = tmp_path / ".out.tmp-dead", tmp_path / ".out.tmp-live"
    for staging in (dead, live):
        (staging / "3").mkdir(parents=True)
        (staging / "3" / "a.png").write_bytes(png())
    held = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running `dcgan balance` holds its staging
        code, stderr = balance(scene, url, "--out", str(scene.out))
        assert code == 0, stderr
        assert not dead.exists() and live.exists() and scene.out.is_dir()
    finally:
        os.close(held)


def test_in_place_removes_a_killed_runs_staging(tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    dead = scene.data / ".dcgan-balance-tmp-dead"
    (dead / "2").mkdir(parents=True)
    (dead / "2" / "dcgan-v1-1-000000.png").write_bytes(png())
    code, stderr = balance(scene, url, "--in-place")
    assert code == 0 and not dead.exists(), stderr


def test_a_pending_journal_is_never_copied(tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    _journal(scene.data, {"2/dcgan-v1-9-000000.png": png()}, None)
    code, stderr = balance(scene, url, "--out", str(scene.out))
    assert code == 2 and "--in-place" in stderr, stderr
    assert not scene.out.exists()


# --- finding 5: small files, large memory; malformed headers ended in tracebacks ---------------


def _peak_rss_mb(args: list[str], cwd: Path) -> tuple[int, float, str]:
    """Run `dcgan ARGS` as a child; its exit code, its own peak RSS (MB) and its stderr."""
    exe = shutil.which("dcgan", path=str(Path(sys.executable).parent))
    assert exe is not None
    with open(cwd / "stderr.txt", "wb") as err:
        child = subprocess.Popen([exe, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024, (cwd / "stderr.txt").read_text()


def _bomb(kind: str, root: Path) -> Path:
    root.mkdir()
    if kind == "png":  # three 12000x12000 grayscale PNGs, 140 KB each
        for label in (0, 1, 2):
            (root / str(label)).mkdir()
            (root / str(label) / "big.png").write_bytes(png_bomb())
        return root
    if kind == "idx-gz":  # 1.1 MB that inflates to 1.16 GB
        images, labels = idx_gzip_bomb()
        (root / "train-images-idx3-ubyte.gz").write_bytes(images)
        (root / "train-labels-idx1-ubyte.gz").write_bytes(labels)
        return root / "train-images-idx3-ubyte.gz"
    (root / "train.npz").write_bytes(npz_bomb())  # 1.1 MB that inflates to 1.16 GB
    return root / "train.npz"


MEMORY_MARGIN_MB = 160  # over a small dataset's run: far less than one bomb inflated


@pytest.fixture(scope="module")
def baseline_mb(url: str, tmp_path_factory: pytest.TempPathFactory) -> float:
    """The peak RSS of `dcgan balance` on a small valid dataset (writing its output)."""
    work = tmp_path_factory.mktemp("baseline")
    small = build(work / "small", "npz", SKEWED)
    args = ["balance", str(small.path), "--url", url, "--seed", "1", "--out", "out"]
    code, peak, stderr = _peak_rss_mb(args, work)
    assert code == 0, stderr
    return peak


@pytest.mark.parametrize("kind", ["png", "idx-gz", "npz"])
def test_a_decompression_bomb_is_refused_before_it_is_inflated(
    kind: str, tmp_path: Path, url: str, baseline_mb: float
) -> None:
    path = _bomb(kind, tmp_path / "bomb")
    args = ["balance", str(path), "--url", url, "--seed", "1", "--out", "out"]

    code, peak, stderr = _peak_rss_mb(args, tmp_path)

    assert code == 2 and len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr
    assert peak < baseline_mb + MEMORY_MARGIN_MB, f"{peak:.0f} MB, baseline {baseline_mb:.0f} MB"


def _idx_wrapping(root: Path) -> Path:
    """Dimensions whose product is 2**64: wraps to 0 in int64, so a bare header 'fits'."""
    root.mkdir()
    dims = (2**31, 2**31, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims)
    (root / "train-images-idx3-ubyte").write_bytes(header)
    (root / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 0]))
    return root / "train-images-idx3-ubyte"


def _npz(members: dict[str, bytes]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        root.mkdir()
        write_npz(root / "train.npz", members)
        return root / "train.npz"

    return make


def _saved(state: object) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        scene = build(root, "hf-disk", SKEWED)
        (scene.data / "state.json").write_text(json.dumps(state))
        return scene.data

    return make


IMAGES = npy_bytes(np.zeros((3, 28, 28), np.uint8))
MALFORMED = {
    "idx-dims-wrap": _idx_wrapping,
    "npz-0d-labels": _npz({"images": IMAGES, "labels": npy_bytes(np.array(3))}),
    "npz-claims-terabytes": _npz(
        {"images": npy_claiming((2**40, 28, 28), "|u1", bytes(99)), "labels": IMAGES}
    ),
    "saved-no-data-files": _saved({}),
    "saved-data-file-not-named": _saved({"_data_files": [{"name": "x"}]}),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_header_ends_in_one_line(kind: str, tmp_path: Path, url: str) -> None:
    path = MALFORMED[kind](tmp_path / "bad")
    code, _, stderr = run_cli("balance", str(path), "--url", url, "--out", str(tmp_path / "out"))
    assert code == 2 and len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr


# --- the card: no absolute path, names escaped -----------------------------------------------


def test_the_card_names_no_path_and_escapes_the_dataset_name(tmp_path: Path, url: str) -> None:
    scene = build(tmp_path, "imagefolder", SKEWED)
    named = tmp_path / "digits <img src=x onerror=alert(1)>\n# Injected [link](javascript:x) `c`"
    scene.data.rename(named)
    scene.path = scene.data = named

    code, stderr = balance(scene, url, "--out", str(scene.out))

    assert code == 0, stderr
    card = (scene.out / "README.md").read_text()
    assert str(tmp_path) not in card and "<img" not in card and "\n# Injected" not in card
    assert "](javascript" not in card
