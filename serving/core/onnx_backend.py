"""The ONNX Runtime backend: CUDA with I/O binding when onnxruntime-gpu sees a GPU, else CPU.

torch-free by design: the API image installs onnxruntime (or onnxruntime-gpu) and never torch.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from models.contract import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT, GeneratorSignature
from serving.core.errors import ModelLoadError

log = logging.getLogger("serving.core.onnx_backend")

Device = Literal["auto", "cpu", "cuda"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


# An 82-byte ONNX model (one Identity node) to ask ONNX Runtime whether its CUDA provider starts.
_PROBE_MODEL = base64.b64decode(
    "CAcSC2RjZ2FuLXByb2JlOjsKEAoBeBIBeSIISWRlbnRpdHkSBXByb2JlWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggI"
    "ARIECgIIAUIECgAQDQ=="
)


@functools.cache
def cuda_problem() -> str | None:
    """Why the CUDA provider cannot run here, or None when it starts.

    A CUDA build of onnxruntime lists CUDAExecutionProvider whether or not a GPU, the driver and
    the CUDA/cuDNN libraries are there; when one is missing, a session silently falls back to the
    CPU (seen with the GPU image on a machine without them). So start one on a tiny model.
    """
    available = ort.get_available_providers()
    if CUDA not in available:
        return f"this onnxruntime has no {CUDA} (available: {', '.join(available)})"
    problem = _cuda_start_problem()
    if problem is not None:
        log.warning("serving on the CPU: %s", problem)
    return problem


def _cuda_start_problem() -> str | None:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the fallback is reported by cuda_problem, not ORT's errors
    try:
        with warnings.catch_warnings():  # a CPU-only build warns about the provider: reported
            warnings.simplefilter("ignore")
            probe = ort.InferenceSession(_PROBE_MODEL, options, providers=[CUDA, CPU])
    except Exception as exc:  # any failure to start a session means no CUDA either
        return f"{CUDA} failed to start a session: {exc}"
    if probe.get_providers()[0] != CUDA:
        return (
            f"{CUDA} is built in but did not start (no GPU visible, or the CUDA/cuDNN libraries "
            "it needs are missing: see ONNX Runtime's CUDA requirements)"
        )
    return None


_ALLOCATION_FAILURES = ("bad_alloc", "bad allocation", "failed to allocate", "out of memory")


def is_allocation_failure(exc: BaseException) -> bool:
    """ONNX Runtime reports running out of memory as its own error types, by message."""
    text = str(exc).lower()
    return any(marker in text for marker in _ALLOCATION_FAILURES)


def choose_providers(device: Device) -> list[str]:
    """``auto``: CUDA when its provider starts here, else CPU; ``cuda`` insists."""
    if device == "cpu":
        return [CPU]
    problem = cuda_problem()
    if problem is None:
        return [CUDA, CPU]
    if device == "cuda":
        raise ModelLoadError(f"device=cuda but {problem}: fix that or use device=auto")
    return [CPU]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def inference_pool(device: Device, workers: int = 0, threads: int = 0) -> tuple[int, int]:
    """(concurrent inference calls, ONNX Runtime intra-op threads per call); 0 means choose.

    On CPU the default is one single-threaded call per core: measured on 2 cores, two concurrent
    1-thread calls give 1.25-1.4x the images/s of one 2-thread call (ONNX Runtime's intra-op
    parallelism does not scale this small generator's layers), with identical outputs. On CUDA,
    one call at a time and ONNX Runtime's default threads.
    """
    if choose_providers(device)[0] == CUDA:
        return workers or 1, threads
    cores = usable_cores()
    workers = workers or cores
    return workers, threads or max(1, cores // workers)


def open_session(path: Path, device: Device, threads: int) -> ort.InferenceSession:
    """An InferenceSession over ``path``; failures sorted into memory, I/O and the model's own."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (physical cores)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; we log what matters ourselves
    # The CPU memory arena (ONNX Runtime's default) keeps what the largest call needed and never
    # gives it back; every call holds at most DCGAN_SERVE_BATCH_MAX_IMAGES images, the
    # classifier's of a filtered request too (serving/core/batching.py), so it stays that size:
    # measured flat over repeated 60,000-image /balance (benchmarks/balance_memory.py).
    options.enable_cpu_mem_arena = True
    try:
        return ort.InferenceSession(str(path), options, providers=choose_providers(device))
    except (ModelLoadError, MemoryError, OSError):
        raise  # OSError: the file could not be read, which says nothing about the model
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        if is_allocation_failure(exc):
            raise MemoryError(f"loading {path.name} ran out of memory: {exc}") from exc
        raise ModelLoadError(f"{path.name} does not load in ONNX Runtime: {exc}") from exc


class OnnxBackend:
    """One InferenceSession over ``generator.onnx``, checked against the manifest's signature."""

    def __init__(
        self,
        path: Path,
        signature: GeneratorSignature,
        *,
        device: Device = "auto",
        threads: int = 0,
    ) -> None:
        self.session = open_session(path, device, threads)
        self._signature = signature
        self.threads = threads
        self._check_signature()
        self.providers: list[str] = self.session.get_providers()
        self.on_cuda = self.providers[0] == CUDA
        self._output = signature.output_name

    @property
    def signature(self) -> GeneratorSignature:
        return self._signature

    def _check_signature(self) -> None:
        sig = self._signature
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if sorted(inputs) != sorted(sig.input_names) or outputs != [sig.output_name]:
            raise ModelLoadError(
                f"generator.onnx has inputs {sorted(inputs)} and outputs {outputs}; the manifest "
                f"promises inputs {sig.input_names} and output {[sig.output_name]}"
            )
        z_dims = inputs["z"].shape
        if len(z_dims) != 2 or z_dims[1] != sig.latent_dim:
            raise ModelLoadError(
                f"generator.onnx takes z of shape {z_dims}, not [N, {sig.latent_dim}]"
            )

    def run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        feeds = {"z": z}
        if self._signature.conditional:
            feeds["labels"] = labels
        if not self.on_cuda:
            out: np.ndarray = self.session.run([self._output], feeds)[0]
            return out
        # CUDA: bind host inputs and a device output; one copy each way, no extra staging.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(self._output, "cuda")
        self.session.run_with_iobinding(binding)
        result: np.ndarray = binding.copy_outputs_to_cpu()[0]
        return result


class OnnxClassifier:
    """The version's evaluation classifier (``classifier.onnx``): pixels -> class probabilities,
    for filtered answers. Same device and threads as the generator."""

    def __init__(self, path: Path, num_classes: int, *, device: Device = "auto", threads: int = 0):
        self.session = open_session(path, device, threads)
        inputs = [(i.name, i.type) for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [(CLASSIFIER_INPUT, "tensor(uint8)")] or outputs != [CLASSIFIER_OUTPUT]:
            raise ModelLoadError(
                f"{path.name} has inputs {inputs} and outputs {outputs}; want "
                f"{CLASSIFIER_INPUT} uint8[N, 28, 28] -> {CLASSIFIER_OUTPUT} float32[N, classes]"
            )
        self.num_classes = num_classes

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> float32 (N, classes), rows summing to 1."""
        out: np.ndarray = self.session.run([CLASSIFIER_OUTPUT], {CLASSIFIER_INPUT: pixels})[0]
        return out

    def confidence(self, pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The probability of each image's own label: float32 (N,)."""
        if not len(labels):
            return np.empty(0, dtype=np.float32)
        probs = self.probabilities(pixels)
        return np.asarray(probs[np.arange(len(labels)), labels], dtype=np.float32)
