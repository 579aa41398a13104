"""Response bodies: JSON with base64 PNGs, raw .npy, a PNG grid, and .npz for /balance.

numpy + Pillow only, shared by the ONNX Runtime service and the TorchServe handler so both answer
with the same bytes for the same pixels.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import numpy as np

from models.images import png_bytes, tile
from serving.schemas import OutputFormat

NPY = "application/x-npy"
NPZ = "application/x-npz"
PNG = "image/png"
JSON = "application/json"
GRID_PER_ROW = 10


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


NPZ_COMPRESSION_LEVEL = 1  # deflate level 1: 4x faster than savez_compressed's 6, about as small


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """A compressed .npz (what ``np.load`` reads), written at a fast deflate level: for a
    60,000-image /balance, level 6 took longer than generating the images (measured)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=NPZ_COMPRESSION_LEVEL
    ) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def grid_png(pixels: np.ndarray) -> bytes:
    """One PNG of all images, GRID_PER_ROW to a row (fewer if the batch is smaller)."""
    return png_bytes(tile(pixels, per_row=max(1, min(GRID_PER_ROW, len(pixels)))))


def response_meta(model: str, version: str, seed: int, size: int) -> dict[str, Any]:
    """What every answer says about itself: in the JSON body and as X- headers."""
    return {"model": model, "version": version, "seed": seed, "batch_size": size}


def response_headers(meta: dict[str, Any]) -> dict[str, str]:
    return {
        "X-Model-Name": str(meta["model"]),
        "X-Model-Version": str(meta["version"]),
        "X-Seed": str(meta["seed"]),
        "X-Batch-Size": str(meta["batch_size"]),
    }


def encode_images(
    pixels: np.ndarray, labels: np.ndarray, fmt: OutputFormat, meta: dict[str, Any]
) -> tuple[bytes, str]:
    """(body, media type) for ``pixels`` uint8 (N, H, W) in the requested format."""
    if fmt is OutputFormat.NPY:
        return npy_bytes(pixels), NPY
    if fmt is OutputFormat.PNG:
        return grid_png(pixels), PNG
    body = {
        **meta,
        "labels": labels.tolist(),
        "images": [base64.b64encode(png_bytes(image)).decode("ascii") for image in pixels],
    }
    return json.dumps(body, separators=(",", ":")).encode(), JSON


def encode_balance(pixels: np.ndarray, labels: np.ndarray) -> tuple[bytes, str]:
    return npz_bytes(images=pixels, labels=labels), NPZ
