"""What can be wrong with a dataset, for the hostile-dataset fuzzer (test_hostile_datasets.py):
links and special files anywhere, a killed run's leftovers, in-place journals of every shape, and
malformed content of each kind in each format (each function mutates a built Scene)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st
from numpy.lib import format as npy
from PIL import Image

from models.idx import idx_bytes
from serving.tools.dataset_journal import PENDING_NAME, write_journal
from tests.serving.hostile import (
    SECRET,
    SIZE,
    Scene,
    gz,
    npy_bytes,
    npy_claiming,
    png,
    png_claiming,
    write_npz,
)

Draw = Callable[[st.SearchStrategy[Any]], Any]


# --- what can be wrong: links, special files, journals, leftovers --------------------------

# Where a link or special file goes, most dangerous first: copied but never decoded.
SPOTS = ["notes.txt", "sub/deeper/x.png", ".hidden", "3/extra.png", "metadata.jsonl", "README.md"]


def _spot(scene: Scene, draw: Draw) -> Path:
    names = [*SPOTS, "7", "9"] if scene.fmt == "imagefolder" else SPOTS
    if scene.fmt.startswith("idx"):
        names = [*names, scene.path.name.replace("images-idx3", "labels-idx1")]
    if scene.fmt == "hf-disk":
        names = [*names, "state.json", "dataset_info.json", "data-00000-of-00001.arrow"]
    where: Path = scene.data / draw(st.sampled_from(names))
    clear(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    return where


def clear(where: Path) -> None:
    """Nothing at ``where`` any more (a link removed itself, never followed)."""
    if where.is_dir() and not where.is_symlink():
        shutil.rmtree(where)
    elif where.is_symlink() or where.exists():
        where.unlink()


def link(scene: Scene, draw: Draw) -> None:
    """A link somewhere in the dataset: half the time to the secrets, else anywhere."""
    where = _spot(scene, draw)
    secrets = [
        scene.outside / "secret.txt",
        scene.outside / "victim",  # holds a PNG that carries the secret
        os.path.relpath(scene.outside / "secret.txt", where.parent),
    ]
    elsewhere = [
        scene.outside / "evil" / "data-00000-of-00001.arrow",
        "..",
        ".",
        where.name,  # itself: a loop
        "nowhere",
        os.path.relpath(next(scene.data.rglob("real-*"), scene.path), where.parent),  # inside
    ]
    os.symlink(draw(st.sampled_from(secrets if draw(st.booleans()) else elsewhere)), where)


def special(scene: Scene, draw: Draw) -> None:
    where = _spot(scene, draw)
    if draw(st.booleans()):
        os.mkfifo(where)
        return
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(where))  # a path too long for a socket leaves nothing there


def leftovers(scene: Scene, draw: Draw) -> None:
    """A killed run's staging: in the dataset (in place) or beside --out."""
    where = draw(
        st.sampled_from([scene.data / ".dcgan-balance-tmp-x1", scene.work / ".out.tmp-x1"])
    )
    (where / "3").mkdir(parents=True)
    (where / "3" / "dcgan-v1-1-000000.png").write_bytes(png())
    if draw(st.booleans()):
        os.symlink(scene.outside / "secret.txt", where / "3" / "leak.png")


JOURNAL_SHAPES = [
    "empty",
    "no-journal",
    "not-json",
    "other-dataset",
    "escape",
    "bad-hash",
    "linked-file",
    "linked-target",
    "extra",
    "pending-link",
    "target-exists",
    "valid",
]


def journal(scene: Scene, draw: Draw, shape: str) -> None:
    """A pending in-place journal of ``shape`` (a valid one included)."""
    pending = scene.data / PENDING_NAME
    if shape == "pending-link":
        os.symlink(scene.outside / "victim", pending)
        return
    staged = scene.data / ".staging-for-test"
    (staged / "3").mkdir(parents=True)
    name = "3/dcgan-v1-1-000000.png"
    (staged / name).write_bytes(png())
    (staged / "metadata.jsonl").write_text(json.dumps({"file_name": name, "label": 3}) + "\n")
    write_journal(staged, scene.data)
    record = json.loads((staged / "journal.json").read_text())
    if shape == "empty":
        for file in (staged / name, staged / "metadata.jsonl", staged / "journal.json"):
            file.unlink()
        (staged / "3").rmdir()
    elif shape == "no-journal":
        (staged / "journal.json").unlink()
    elif shape == "not-json":
        (staged / "journal.json").write_bytes(draw(st.binary(max_size=40)))
    elif shape == "other-dataset":
        record["dataset"] = {"device": 1, "inode": 2}
    elif shape == "escape":
        record["files"]["../outside/secret.txt"] = record["files"].pop(name)
    elif shape == "bad-hash":
        record["files"][name] = "0" * 64
    elif shape == "linked-file":
        (staged / name).unlink()
        os.symlink(scene.outside / "victim" / "keep.png", staged / name)
        record["files"][name] = hashlib.sha256(png(text=SECRET)).hexdigest()
    elif shape == "linked-target":
        clear(scene.data / "3")
        os.symlink(scene.outside / "victim", scene.data / "3")
    elif shape == "extra":
        (staged / "3" / "planted.txt").write_bytes(SECRET)
    elif shape == "target-exists":
        (scene.data / "3").mkdir(exist_ok=True)
        (scene.data / name).write_bytes(png())
    if shape in ("other-dataset", "escape", "bad-hash", "linked-file"):
        (staged / "journal.json").write_text(json.dumps(record))
    staged.rename(pending)


# --- what can be wrong in each format --------------------------------------------------------


IMAGE_KINDS = ["garbage", "truncated", "claims", "mode", "size", "format"]


def bad_image(scene: Scene, draw: Draw, kind: str) -> bytes:
    if kind == "mode":
        return png(mode=draw(st.sampled_from(["RGB", "P", "1", "I;16", "LA", "RGBA"])))
    if kind == "size":
        shape = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
        return png(np.zeros(shape, np.uint8))
    if kind == "claims":
        return png_claiming(draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1)))
    if kind == "truncated":
        whole = png(scene.images[0])
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "garbage":
        return bytes(draw(st.binary(max_size=64)))
    buffer = io.BytesIO()
    Image.new("L", (SIZE, SIZE)).save(buffer, format=draw(st.sampled_from(["GIF", "BMP", "TIFF"])))
    return buffer.getvalue()


def imagefolder_content(scene: Scene, draw: Draw, kind: str) -> None:
    if kind.startswith("image-"):
        victim = draw(st.sampled_from(sorted(scene.data.rglob("real-*.png"))))
        victim.write_bytes(bad_image(scene, draw, kind.removeprefix("image-")))
    elif kind == "folder":
        names = ["10", "-1", "cat", "3\n", "\u0663", "03", "<b>x</b>", b"\xff\xfe"]
        folder = draw(st.sampled_from(names))
        where = os.path.join(os.fsencode(scene.data), os.fsencode(folder))
        os.makedirs(where, exist_ok=True)
        Path(os.fsdecode(os.path.join(where, b"a.png"))).write_bytes(png())
    elif kind == "file-name":
        (scene.data / "3").mkdir(exist_ok=True)
        name = draw(st.sampled_from([b"a\nb.png", b"\xff.png", b"error: x.png", b"\x1b[31m.png"]))
        Path(os.fsdecode(os.path.join(os.fsencode(scene.data / "3"), name))).write_bytes(
            draw(st.sampled_from([png(), b"not a png"]))
        )
    elif kind == "deep":
        (scene.data.joinpath(*["d"] * draw(st.integers(30, 40)))).mkdir(parents=True)
    elif kind == "metadata":
        lines = [b"[" * 100_000, b"\xff\xfe", b"[1, 2]", b"{not json", b'{"ok": 1}']
        (scene.data / "metadata.jsonl").write_bytes(draw(st.sampled_from(lines)) + b"\n")
    else:
        for file in scene.data.rglob("real-*.png"):
            file.unlink()


def npz_content(scene: Scene, draw: Draw, kind: str) -> None:
    n = len(scene.labels)
    images, labels = npy_bytes(scene.images), npy_bytes(scene.labels)
    if kind == "missing":
        members = draw(st.sampled_from([{"images": images}, {"labels": labels}, {}]))
    elif kind == "dtype":
        dtype = draw(st.sampled_from([np.float32, np.uint16, np.int8, np.bool_]))
        members = {"images": npy_bytes(scene.images.astype(dtype)), "labels": labels}
        if draw(st.booleans()):
            members = {"images": images, "labels": npy_bytes(scene.labels.astype(dtype))}
    elif kind == "shape":
        shapes = [(n, SIZE * SIZE), (n, SIZE, SIZE, 3), (n, 2, SIZE, SIZE), (n + 1, SIZE, SIZE)]
        shape = draw(st.sampled_from(shapes))
        members = {"images": npy_bytes(np.zeros(shape, np.uint8)), "labels": labels}
    elif kind == "claims":
        shape = tuple(draw(st.lists(st.integers(0, 2**40), min_size=0, max_size=4)))
        members = {"images": npy_claiming(shape, "|u1", bytes(64)), "labels": labels}
    elif kind == "trailing":
        members = {"images": images + bytes(draw(st.integers(1, 1 << 16))), "labels": labels}
    elif kind == "truncated":
        members = {"images": images[: draw(st.integers(0, len(images) - 1))], "labels": labels}
    elif kind == "zero-d":
        members = {"images": images, "labels": npy_bytes(np.array(3))}
    elif kind == "object":
        members = {"images": images, "labels": npy_bytes(np.array([3] * n, dtype=object))}
    elif kind == "members":
        members = {f"m{i}": labels for i in range(100)} | {"images": images, "labels": labels}
    elif kind == "version":
        members = {"images": npy.magic(3, 0) + images[8:], "labels": labels}
    else:
        scene.path.write_bytes(draw(st.binary(max_size=200)))
        return
    write_npz(scene.path, members)


def idx_content(scene: Scene, draw: Draw, kind: str) -> None:
    gzipped = scene.fmt == "idx-gz"
    labels_path = scene.data / scene.path.name.replace("images-idx3", "labels-idx1")
    target = draw(st.sampled_from([scene.path, labels_path]))
    raw = idx_bytes(scene.images if target == scene.path else scene.labels)
    if kind == "magic":
        raw = bytes(draw(st.binary(min_size=4, max_size=4))) + raw[4:]
    elif kind == "type":
        raw = raw[:2] + bytes([draw(st.sampled_from([0x09, 0x0B, 0x0C, 0x0D, 0x0E]))]) + raw[3:]
    elif kind == "dims":
        dims = draw(st.lists(st.sampled_from([0, 1, 3, SIZE, 2**16, 2**31, 2**32 - 1]), max_size=4))
        raw = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + raw[-64:]
    elif kind == "truncated":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "trailing":
        raw = raw + bytes(draw(st.integers(1, 1 << 16)))
    else:
        target.unlink()
        return
    packed = gz(raw) if gzipped else raw
    if gzipped and draw(st.booleans()):
        packed = packed[: draw(st.integers(0, len(packed) - 1))]  # a cut gzip stream
    target.write_bytes(packed)


def parquet_content(scene: Scene, draw: Draw, kind: str) -> None:
    n = len(scene.labels)
    if kind in ("truncated", "garbage"):
        whole = scene.path.read_bytes()
        cut = whole[: draw(st.integers(0, len(whole) - 1))]
        scene.path.write_bytes(cut if kind == "truncated" else bytes(draw(st.binary(max_size=99))))
        return
    image = [{"bytes": png(p), "path": None} for p in scene.images]
    columns: dict[str, Any] = {"image": image, "label": scene.labels.tolist()}
    if kind == "columns":
        columns = draw(st.sampled_from([{"image": image}, columns | {"extra": [1] * n}]))
    elif kind == "labels":
        columns["label"] = draw(st.sampled_from([["3"] * n, [1.5] * n, [None] * n, [10] * n]))
    elif kind == "image":
        bad = draw(st.sampled_from([None, {"bytes": None, "path": "/etc/passwd"}]))
        image_kind = draw(st.sampled_from(IMAGE_KINDS))
        columns["image"][0] = bad or {"bytes": bad_image(scene, draw, image_kind), "path": None}
    pq.write_table(pa.table(columns), scene.path)  # no Hugging Face features metadata


def saved_content(scene: Scene, draw: Draw, kind: str) -> None:
    state_path, info_path = scene.data / "state.json", scene.data / "dataset_info.json"
    state = json.loads(state_path.read_text())
    if kind == "escape":
        evil = scene.outside / "evil" / "data-00000-of-00001.arrow"
        names = [str(evil), os.path.relpath(evil, scene.data), "sub/x.arrow", "", ".", "..", 5]
        state["_data_files"] = [{"filename": draw(st.sampled_from(names))}]
        state_path.write_text(json.dumps(state))
    elif kind == "state":
        bad = [
            "not json",
            "[]",
            '{"_data_files": 3}',
            '{"_data_files": []}',
            '{"_data_files": [1]}',
            '{"_data_files": [{"filename": null}]}',
        ]
        state_path.write_text(draw(st.sampled_from(bad)))
    elif kind == "info":
        bad = ["not json", "[]", '{"features": {"image": {"_type": "Nope"}}}', '{"features": 3}']
        info_path.write_text(draw(st.sampled_from(bad)))
    elif kind == "arrow":
        arrow = scene.data / state["_data_files"][0]["filename"]
        whole = arrow.read_bytes()
        arrow.write_bytes(whole[: draw(st.integers(0, len(whole) - 1))])
    elif kind == "compressed":
        arrow = scene.data / state["_data_files"][0]["filename"]
        table = pa.ipc.open_stream(arrow.read_bytes()).read_all()
        options = pa.ipc.IpcWriteOptions(compression=draw(st.sampled_from(["lz4", "zstd"])))
        with (
            pa.OSFile(str(arrow), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema, options=options) as w,
        ):
            w.write_table(table)
    else:
        draw(st.sampled_from([state_path, info_path])).unlink()


Mutate = Callable[[Scene, Draw, str], None]
CONTENT: dict[str, tuple[Mutate, list[str]]] = {
    "imagefolder": (
        imagefolder_content,
        [
            *(f"image-{kind}" for kind in IMAGE_KINDS),
            *("folder", "file-name", "deep", "metadata", "empty"),
        ],
    ),
    "npz": (
        npz_content,
        [
            *("missing", "dtype", "shape", "claims", "trailing", "truncated"),
            *("zero-d", "object", "not-zip", "members", "version"),
        ],
    ),
    "idx": (idx_content, ["magic", "type", "dims", "truncated", "trailing", "missing"]),
    "idx-gz": (idx_content, ["magic", "type", "dims", "truncated", "trailing", "missing"]),
    "parquet": (parquet_content, ["columns", "labels", "image", "raw", "truncated", "garbage"]),
    "hf-disk": (saved_content, ["escape", "state", "info", "arrow", "compressed", "marker"]),
}
CONTENT_CASES = [(fmt, kind) for fmt, (_, kinds) in CONTENT.items() for kind in kinds]
