"""The evaluation classifier as ONNX, published beside the generator for filtered answers.

The graph takes the pixels clients receive (``pixels uint8[N, 28, 28]``, contract 2) and returns
``probabilities float32[N, classes]``, so the server judges exactly the images it would send,
with ONNX Runtime and no torch. The export is checked like the generator's: the ONNX checker, the
names and dtypes, and parity with eager PyTorch on the saved file.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.contract import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT
from pipeline.errors import ExportError
from pipeline.export.artifacts import BATCH_DIM, ONNX_TOLERANCE
from pipeline.export.module import quiet_exporters

PARITY_IMAGES = 64


class PixelClassifier(nn.Module):
    """uint8 pixels -> class probabilities, with the classifier's [-1, 1] input scaling inside."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = copy.deepcopy(classifier).cpu().float().eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float32).div(127.5).sub(1.0).unsqueeze(1)  # (N, 1, 28, 28)
        return torch.softmax(self.classifier(x), dim=1)


def export_classifier(classifier: nn.Module, path: Path, size: int = 28) -> float:
    """Write ``path`` (one self-contained file); returns the parity's max |ONNX - eager|."""
    module = PixelClassifier(classifier)
    example = torch.zeros((2, size, size), dtype=torch.uint8)
    batch = torch.export.Dim(BATCH_DIM, min=1)
    try:
        with quiet_exporters():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[CLASSIFIER_INPUT],
                output_names=[CLASSIFIER_OUTPUT],
                dynamo=True,
                dynamic_shapes={"pixels": {0: batch}},
                external_data=False,
                verbose=False,
            )
        model = onnx.load(str(path), load_external_data=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"ONNX export of the evaluation classifier failed: {exc}") from exc
    onnx.save_model(model, str(path), save_as_external_data=False)
    diff = classifier_parity(module, path, size)
    if not diff <= ONNX_TOLERANCE:  # NaN fails too
        path.unlink(missing_ok=True)
        raise ExportError(
            f"the classifier's ONNX export differs from PyTorch by {diff:.3g} "
            f"(tolerance {ONNX_TOLERANCE})"
        )
    return diff


def classifier_parity(module: PixelClassifier, path: Path, size: int) -> float:
    """Max |ONNX Runtime - eager| over fixed random pixels, at batch sizes 1 and 64."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).integers(0, 256, (PARITY_IMAGES, size, size), np.uint8)
    worst = 0.0
    for batch in (pixels[:1], pixels):
        got = np.asarray(session.run([CLASSIFIER_OUTPUT], {CLASSIFIER_INPUT: batch})[0])
        with torch.no_grad():
            want = module(torch.from_numpy(batch)).numpy()
        if got.shape != want.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))
    return worst
