"""Export to ONNX and TorchScript: contract 2 on the graph, parity with eager, refusal on mismatch.

Generators are small (g_width=8) but not freshly initialised: batch-norm statistics are calibrated
and the last layer scaled so that outputs span [-1, 1], as a trained model's do; at DCGAN init
every pixel sits near 0 and parity or uint8 comparisons would prove little.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from models.contract import (
    CHECKPOINT_NAME,
    ONNX_NAME,
    TORCHSCRIPT_NAME,
    labels_for_request,
    latent_for_seed,
    to_uint8,
)
from models.netconfig import GANConfig
from models.networks import build_generator
from pipeline.checkpoint import load_generator, save_checkpoint
from pipeline.errors import CheckpointError, UserError
from pipeline.export import (
    PARITY_BATCH_SIZES,
    ExportError,
    ExportResult,
    export_checkpoint,
    export_generator,
)
from pipeline.export.module import quiet_exporters
from pipeline.sampling import generate

REPO = Path(__file__).resolve().parents[2]
CASES = {
    "dcgan-conditional": GANConfig(arch="dcgan", conditional=True, g_width=8),
    "dcgan-unconditional": GANConfig(arch="dcgan", conditional=False, g_width=8),
    "fc-conditional": GANConfig(arch="fc", conditional=True, g_width=8),
}


def read_torchscript_signature(path: Path) -> dict[str, Any]:
    """The signature stamped beside the TorchScript program, read as a user of the file would."""
    extra = {"signature.json": ""}
    with quiet_exporters():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
    return dict(json.loads(extra["signature.json"]))


def lively_generator(cfg: GANConfig, seed: int = 0) -> nn.Module:
    """A generator in eval mode whose outputs use the whole tanh range."""
    torch.manual_seed(seed)
    g = build_generator(cfg)
    z = torch.from_numpy(latent_for_seed(seed, 256, cfg.latent_dim))
    labels = torch.from_numpy(labels_for_request(256, None)) if cfg.conditional else None
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None  # cumulative average: running stats = stats of the batches seen
    g.train()
    with torch.no_grad():
        for _ in range(2):
            g(z, labels)
        last = [m for m in g.modules() if isinstance(m, nn.Linear | nn.ConvTranspose2d)][-1]
        g.eval()
        last.weight.mul_(1.5 / float(g(z, labels).std()))
    return g.eval()


@dataclass
class Exported:
    cfg: GANConfig
    generator: nn.Module  # the eager module the artifacts must match
    result: ExportResult
    out_dir: Path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """Each case exported once; the conditional DCGAN goes through a real checkpoint file."""
    done: dict[str, Exported] = {}
    for i, (name, cfg) in enumerate(CASES.items()):
        root = tmp_path_factory.mktemp(name)
        g = lively_generator(cfg, seed=i)
        out_dir = root / "artifacts"
        if name == "dcgan-conditional":
            ckpt = root / "run"
            state = {"gan_config": cfg.to_dict(), "generator": g.state_dict(), "epoch": 1}
            save_checkpoint(ckpt / CHECKPOINT_NAME, state)
            result = export_checkpoint(ckpt, out_dir)
            g = load_generator(ckpt)[0]
        else:
            g.train()  # export must use eval mode and leave the caller's module as it was
            result = export_generator(g, cfg, out_dir)
            assert g.training
            g.eval()
        done[name] = Exported(cfg, g, result, out_dir)
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_export_passes_parity_at_1_64_1024(exported: dict[str, Exported], case: str) -> None:
    e = exported[case]
    r = e.result
    figures = {(p.backend, p.batch_size): p.max_abs_diff for p in r.parity}
    assert set(figures) == {(b, n) for b in ("onnxruntime", "torchscript") for n in (1, 64, 1024)}
    assert PARITY_BATCH_SIZES == (1, 64, 1024)
    assert all(figures["onnxruntime", n] <= 1e-4 for n in PARITY_BATCH_SIZES)
    assert all(figures["torchscript", n] <= 1e-6 for n in PARITY_BATCH_SIZES)
    assert all(p.passed for p in r.parity)
    assert r.exporter == "dynamo"
    assert r.signature == e.cfg.signature.to_dict()
    assert set(r.versions) >= {"torch", "onnx", "onnxruntime"}
    assert r.versions["onnxruntime"] == ort.__version__

    # Exactly the two artifacts, described by their real bytes; the manifest part is JSON.
    assert sorted(p.name for p in e.out_dir.iterdir()) == sorted([ONNX_NAME, TORCHSCRIPT_NAME])
    for f in r.files:
        data = f.path.read_bytes()
        assert (f.sha256, f.size) == (hashlib.sha256(data).hexdigest(), len(data))
    manifest = json.loads(json.dumps(r.to_manifest()))
    assert manifest["files"][ONNX_NAME]["sha256"] == r.onnx.sha256
    assert manifest["parity"]["onnxruntime"]["max_abs_diff"]["1024"] == figures["onnxruntime", 1024]
    assert manifest["onnx_opset"] == r.opset


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_graph_follows_contract_2(exported: dict[str, Exported], case: str) -> None:
    e = exported[case]
    path = e.result.onnx.path
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.graph.initializer  # the weights are inline, in this one file
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == e.result.opset
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["dcgan.signature"]) == e.cfg.signature.to_dict()

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    want = [("z", "tensor(float)", ["N", e.cfg.latent_dim])]
    if e.cfg.conditional:
        want.append(("labels", "tensor(int64)", ["N"]))
    assert inputs == want
    outputs = [(o.name, o.type, o.shape) for o in session.get_outputs()]
    assert outputs == [("images", "tensor(float)", ["N", 1, 28, 28])]
    for n in (3, 7):  # batch sizes the parity check did not use
        feeds = {"z": latent_for_seed(5, n, e.cfg.latent_dim)}
        if e.cfg.conditional:
            feeds["labels"] = labels_for_request(n, 4)
        (images,) = session.run(None, feeds)
        assert images.shape == (n, 1, 28, 28) and images.dtype == np.float32


def test_torchscript_loads_and_matches_eager(exported: dict[str, Exported]) -> None:
    for e in exported.values():
        path = str(e.result.torchscript.path)
        scripted = torch.jit.load(path, map_location="cpu")  # type: ignore[no-untyped-call]
        z = torch.from_numpy(latent_for_seed(9, 5, e.cfg.latent_dim))
        labels = torch.from_numpy(labels_for_request(5, [3, 1, 4, 1, 5]))
        args = (z, labels) if e.cfg.conditional else (z,)
        with torch.no_grad():
            got = scripted(*args)
            want = e.generator(*args)
        assert got.shape == (5, 1, 28, 28)
        assert float((got - want).abs().max()) <= 1e-6
        assert read_torchscript_signature(e.result.torchscript.path) == e.cfg.signature.to_dict()


def test_onnx_runs_without_torch_and_gives_eager_pixels(
    exported: dict[str, Exported], tmp_path: Path
) -> None:
    """The server image has no torch: load and run the model with onnxruntime + numpy only."""
    e = exported["dcgan-conditional"]
    seed, n = 20261122, 40
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed on the server")
                return None

        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        import onnxruntime as ort
        from models.contract import labels_for_request, latent_for_seed, to_uint8

        session = ort.InferenceSession({str(e.result.onnx.path)!r},
                                       providers=["CPUExecutionProvider"])
        feeds = {{"z": latent_for_seed({seed}, {n}, {e.cfg.latent_dim}),
                  "labels": labels_for_request({n}, None)}}
        (images,) = session.run(["images"], feeds)
        np.save({str(tmp_path / "pixels.npy")!r}, to_uint8(images))
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    served = np.load(tmp_path / "pixels.npy")
    eager = to_uint8(generate(e.generator, e.cfg, seed, labels_for_request(n, None)))
    assert served.dtype == np.uint8 and served.shape == (n, 1, 28, 28)
    assert served.min() == 0 and served.max() == 255  # a lively model, not a grey field
    np.testing.assert_array_equal(served, eager)


class SwapsWeightsWhenExported(nn.Module):
    """Runs generator A eagerly but generator B (other weights) while an exporter records it.

    Export-only code paths are a real way for artifacts to drift from the module; here one hands
    the exporter a whole different generator, which parity must catch.
    """

    def __init__(self, cfg: GANConfig, while_exporting: Callable[[], bool]) -> None:
        super().__init__()
        self.eager = lively_generator(cfg, seed=1)
        self.other = lively_generator(cfg, seed=2)
        self.while_exporting = while_exporting

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        g = self.other if self.while_exporting() else self.eager
        images: torch.Tensor = g(z, labels)
        return images


def _onnx_exporting() -> bool:
    return bool(torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export())


def _tracing() -> bool:
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined,no-untyped-call]


@pytest.mark.parametrize(
    ("backend", "while_exporting"),
    [("onnxruntime", _onnx_exporting), ("torchscript", _tracing)],
)
def test_parity_failure_raises_and_writes_nothing(
    tmp_path: Path, backend: str, while_exporting: Callable[[], bool]
) -> None:
    cfg = GANConfig(arch="dcgan", conditional=True, g_width=8)
    module = SwapsWeightsWhenExported(cfg, while_exporting)
    fresh = tmp_path / "fresh"
    with pytest.raises(ExportError, match=rf"{backend} at batch 1: max abs diff") as info:
        export_generator(module, cfg, fresh)
    assert isinstance(info.value, UserError)
    assert f"nothing was written to {fresh}" in str(info.value)
    assert {p.backend for p in info.value.parity if not p.passed} == {backend}
    assert not fresh.exists()
    assert os.listdir(tmp_path) == []  # no staging directory left beside it either

    # An existing destination keeps what it had, byte for byte.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / ONNX_NAME).write_bytes(b"previous model")
    with pytest.raises(ExportError):
        export_generator(module, cfg, kept)
    assert os.listdir(kept) == [ONNX_NAME]
    assert (kept / ONNX_NAME).read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == ["kept"]


def test_legacy_exporter_meets_the_same_contract(tmp_path: Path) -> None:
    """The fallback path: FC's reshape is where the legacy exporter loses static output dims."""
    cfg = GANConfig(arch="fc", conditional=True, g_width=8)
    g = lively_generator(cfg)
    r = export_generator(g, cfg, tmp_path / "out", exporter="legacy", batch_sizes=(1, 64))
    assert r.exporter == "legacy" and all(p.passed for p in r.parity)
    session = ort.InferenceSession(str(r.onnx.path), providers=["CPUExecutionProvider"])
    assert [o.shape for o in session.get_outputs()] == [["N", 1, 28, 28]]
    assert [i.shape for i in session.get_inputs()] == [["N", cfg.latent_dim], ["N"]]


def test_missing_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        export_checkpoint(tmp_path / "nope.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_contract_check_rejects_a_fixed_batch_or_wrong_dtype(exported: dict[str, Exported]) -> None:
    """The graph check bites: an exporter that baked in the example batch or cast labels fails."""
    from pipeline.export.onnx_file import check_onnx_signature as _check_onnx_signature

    e = exported["dcgan-conditional"]
    model = onnx.load(str(e.result.onnx.path))
    _check_onnx_signature(model, e.cfg.signature)  # as exported: fine

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    with pytest.raises(ExportError, match="z has a fixed batch dim 2"):
        _check_onnx_signature(fixed, e.cfg.signature)

    int32 = onnx.ModelProto()
    int32.CopyFrom(model)
    int32.graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.INT32
    with pytest.raises(ExportError, match="labels has dtype INT32"):
        _check_onnx_signature(int32, e.cfg.signature)
