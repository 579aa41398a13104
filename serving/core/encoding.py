"""Response bodies: JSON with base64 PNGs, raw .npy, a PNG grid, and .npz for /balance.

numpy + Pillow only, shared by the ONNX Runtime service and the TorchServe handler so both answer
with the same bytes for the same pixels.
"""

from __future__ import annotations

import base64
import io
import zipfile
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from models.contract import NUM_CLASSES
from models.images import png_bytes, tile
from serving.core.schemas import OutputFormat

if TYPE_CHECKING:
    from serving.core.digits import Answer

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


Label = Annotated[int, Field(ge=0, le=NUM_CLASSES - 1)]


class ImagesJSON(BaseModel):
    """The answer to format "json" (the OpenAPI document shows this model)."""

    model: str
    version: str
    seed: int
    batch_size: int
    labels: list[Label]
    images: list[str] = Field(
        description="One PNG per image, base64",
        json_schema_extra={"items": {"type": "string", "contentEncoding": "base64"}},
    )


def answer_meta(answer: Answer) -> dict[str, Any]:
    """What every answer says about itself: in the JSON body and as X- headers."""
    return {
        "model": answer.model,
        "version": answer.version,
        "seed": answer.seed,
        "batch_size": answer.size,
    }


def answer_headers(answer: Answer) -> dict[str, str]:
    """Contract 6's headers, and the filter's when the answer was filtered."""
    headers = {
        "X-Model-Name": answer.model,
        "X-Model-Version": answer.version,
        "X-Seed": str(answer.seed),
        "X-Batch-Size": str(answer.size),
    }
    if answer.filtered is not None:
        headers.update(answer.filtered.headers())
    return headers


def encode_images(answer: Answer, fmt: OutputFormat) -> tuple[bytes, str]:
    """(body, media type) for the answer's uint8 (N, H, W) pixels in the requested format."""
    if fmt is OutputFormat.NPY:
        return npy_bytes(answer.pixels), NPY
    if fmt is OutputFormat.PNG:
        return grid_png(answer.pixels), PNG
    body = ImagesJSON(
        **answer_meta(answer),
        labels=answer.labels.tolist(),
        images=[base64.b64encode(png_bytes(image)).decode("ascii") for image in answer.pixels],
    )
    return body.model_dump_json().encode(), JSON


def encode_balance(answer: Answer) -> tuple[bytes, str]:
    return npz_bytes(images=answer.pixels, labels=answer.labels), NPZ
