"""The baseline: a plain FastAPI app running the eager PyTorch generator, as one would write it.

No batching, no ONNX: a sync endpoint (FastAPI's thread pool) that validates with pydantic, builds
the latent with the shared seed contract, runs the checkpoint's generator under inference_mode and
returns .npy. Started by benchmarks/serve_speed.py as
``DCGAN_EAGER_CHECKPOINT=... uvicorn benchmarks.eager_server:app``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

from models.contract import MAX_SEED, labels_for_request, latent_for_seed, to_uint8
from pipeline.checkpoint import load_generator
from serving.core.encoding import NPY, npy_bytes

generator, config, _ = load_generator(
    Path(os.environ["DCGAN_EAGER_CHECKPOINT"]), torch.device("cpu")
)
generator.eval()
app = FastAPI()


class Body(BaseModel):
    seed: int = Field(0, ge=0, le=MAX_SEED)
    batch_size: int = Field(10, ge=1, le=1024)
    digits: int | list[int] | None = None
    format: str = "npy"


@app.post("/generate")
def generate(body: Body) -> Response:
    z = torch.from_numpy(latent_for_seed(body.seed, body.batch_size, config.latent_dim))
    labels = torch.from_numpy(labels_for_request(body.batch_size, body.digits))
    with torch.inference_mode():
        images = generator(z, labels).numpy()
    return Response(npy_bytes(to_uint8(images)[:, 0]), media_type=NPY)


@app.get("/readyz")
def readyz() -> dict[str, bool]:
    return {"ready": True}
