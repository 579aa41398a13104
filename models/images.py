"""Images for people: sample grids as PNG. numpy + Pillow only (the server uses it too)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from models.contract import to_uint8
from models.fileio import write_atomic


def make_grid(images: np.ndarray, per_row: int = 10, pad: int = 2) -> np.ndarray:
    """Tile generator output (N, 1, H, W) in [-1, 1] into one uint8 (rows*H', per_row*W') image."""
    return tile(to_uint8(images)[:, 0], per_row, pad)


def tile(pixels: np.ndarray, per_row: int = 10, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W) into one grid image, row by row, on a black background."""
    n, h, w = pixels.shape
    rows = max(1, -(-n // per_row))
    grid = np.zeros((rows * (h + pad) + pad, per_row * (w + pad) + pad), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, per_row)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def png_bytes(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid_png(images: np.ndarray, path: Path, per_row: int = 10) -> None:
    """Write a sample grid atomically (a reader never sees half a PNG)."""
    write_atomic(path, png_bytes(make_grid(images, per_row)))
