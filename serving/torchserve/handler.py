"""TorchServe handler for /generate over the TorchScript artifact of a published model version.

TorchServe imports this file from the unpacked .mar as the top-level module ``handler`` and calls
the module function :func:`handle` (first with ``data=None`` to initialise). Everything that
decides *what* a request means and *which* images it gets is shared with the ONNX Runtime service
(``serving.core.schemas`` decodes, ``serving.core.digits`` answers, ``serving.core.encoding``
encodes), so both backends answer the same request with the same digits, filtered ones included
(the archive carries the version's ``classifier.onnx``); this module only adds TorchScript
inference and the TorchServe plumbing. The project package must be installed in TorchServe's
Python (as in our image).

Errors: a handler exception makes TorchServe answer 503 "Prediction failed" for the whole batch,
so every request is answered here on its own: a :class:`RequestError` with its 4xx status
(``serving.http_status``, as the ONNX service answers it) and
``{"detail": ...}``, and (a bug) anything else with 500 for that request only.
"""

from __future__ import annotations

import http
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.contract import (
    CLASSIFIER_NAME,
    DEFAULT_MAX_CANDIDATES,
    MANIFEST_NAME,
    TORCHSCRIPT_NAME,
    GeneratorSignature,
)
from serving.core.decoding import parse_body, parse_query
from serving.core.digits import ChunkedRunner, DigitService, run_now
from serving.core.encoding import JSON, answer_headers, encode_images
from serving.core.errors import (
    HandlerConfigError,
    RequestError,
    UnknownModel,
    UnsupportedMediaType,
)
from serving.core.generation import Backend, Classifier, Plan, plan_generate
from serving.core.lifecycle import warm_up_classifier
from serving.core.onnx_backend import OnnxClassifier
from serving.core.schemas import GenerateRequest, Limits
from serving.http_status import http_status

log = logging.getLogger("serving.torchserve")

MAX_BATCH_ENV = "DCGAN_SERVE_MAX_BATCH_SIZE"
MAX_BODY_ENV = "DCGAN_SERVE_MAX_BODY_BYTES"
MAX_CANDIDATES_ENV = "DCGAN_SERVE_MAX_CANDIDATES"
DEFAULTS = Limits()
CHUNK = 256  # images per TorchScript call: bounds activation memory for a batch-1024 request
WARMUP_SEED = 0
BODY_KEYS = ("body", "data")  # TorchServe names a raw POST body "body"; some clients send "data"


class TorchScriptBackend:
    """``serving.core.generation.Backend`` over a TorchScript generator (numpy in, numpy out)."""

    def __init__(self, path: Path, signature: GeneratorSignature, device: str = "cpu") -> None:
        self.device = torch.device(device)
        module = torch.jit.load(str(path), map_location=self.device)  # type: ignore[no-untyped-call]
        self.module: torch.jit.ScriptModule = module.eval()
        self._signature = signature

    @property
    def signature(self) -> GeneratorSignature:
        return self._signature

    def run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        # np.require: torch.from_numpy warns on read-only arrays and needs C order.
        z_t = torch.from_numpy(np.require(z, np.float32, ["C", "W"])).to(self.device)
        with torch.inference_mode():
            if self._signature.conditional:
                labels_t = torch.from_numpy(np.require(labels, np.int64, ["C", "W"]))
                out = self.module(z_t, labels_t.to(self.device))
            else:
                out = self.module(z_t)
        result: np.ndarray = out.float().cpu().numpy()
        return result


@dataclass(frozen=True)
class Loaded:
    """The loaded version, as the digit service sees it (``serving.core.digits.Version``)."""

    name: str
    version: str
    backend: Backend
    classifier: Classifier | None


class GeneratorService:
    """One loaded model version answering a batch of /generate requests through the digit
    service (``serving.core.digits``), run in place in chunks of ``CHUNK`` images."""

    def __init__(self) -> None:
        self.initialized = False
        self.backend: TorchScriptBackend | None = None
        self.classifier: Classifier | None = None  # the archive's classifier.onnx, if it has one
        self.model_name = ""
        self.version = ""
        self.limits = DEFAULTS
        self.digits = DigitService(ChunkedRunner(CHUNK), DEFAULT_MAX_CANDIDATES)

    def initialize(self, context: Any) -> None:
        """Load the TorchScript, read name/version/signature from the bundled manifest, warm up."""
        started = time.monotonic()
        properties: Mapping[str, Any] = context.system_properties
        model_dir = Path(str(properties.get("model_dir")))
        manifest = _read_manifest(model_dir / MANIFEST_NAME)
        signature = _signature(manifest)
        serialized = (context.manifest or {}).get("model", {}).get("serializedFile")
        path = model_dir / str(serialized or TORCHSCRIPT_NAME)
        if not path.is_file():
            raise HandlerConfigError(f"{path.name} is missing from the model archive")
        device = _device(properties.get("gpu_id"))
        self.backend = TorchScriptBackend(path, signature, device)
        self.model_name = str(manifest["model_name"])
        self.version = str(manifest["version"])
        model_config = getattr(context, "model_yaml_config", None) or {}
        self.limits = _limits(model_config)
        max_candidates = _max_candidates(model_config)
        # Any valid request fits: the most images, each drawing every candidate.
        runner = ChunkedRunner(CHUNK, self.limits.max_batch_size * max_candidates)
        self.digits = DigitService(runner, max_candidates)
        self._warm_up()
        if (model_dir / CLASSIFIER_NAME).is_file():
            self.classifier = OnnxClassifier(model_dir / CLASSIFIER_NAME, signature.num_classes)
            warm_up_classifier(self.classifier, self.backend)
        self.initialized = True
        log.info(
            "torchserve.ready model=%s version=%s device=%s max_batch_size=%d seconds=%.2f",
            self.model_name,
            self.version,
            device,
            self.limits.max_batch_size,
            time.monotonic() - started,
        )

    def _warm_up(self) -> None:
        """One real call, checked against the signature: a broken artifact fails the load."""
        assert self.backend is not None
        sig = self.backend.signature
        plan = Plan(WARMUP_SEED, np.arange(2, dtype=np.int64) % sig.num_classes)
        out = self.backend.run(plan.latent(sig), plan.labels)
        expected = (2, sig.channels, sig.image_size, sig.image_size)
        if out.shape != expected or not np.isfinite(out).all():
            raise HandlerConfigError(
                f"{TORCHSCRIPT_NAME} gave output of shape {out.shape} (finite: "
                f"{bool(np.isfinite(out).all())}); the manifest promises {expected}"
            )

    def handle(self, data: list[Any], context: Any) -> list[bytes]:
        return [self._answer(idx, item, context) for idx, item in enumerate(data)]

    def _answer(self, idx: int, item: Any, context: Any) -> bytes:
        started = time.monotonic()
        try:
            request = parse_request(item, _request_headers(context, idx), self.limits)
            payload, media_type, headers = self.generate(request)
        except RequestError as exc:
            status = http_status(exc)
            log.info("torchserve.rejected status=%d detail=%s", status, exc)
            return _error(context, idx, status, str(exc))
        except Exception:  # a bug: answer this request with 500, keep the rest of the batch
            log.exception("torchserve.failed model=%s version=%s", self.model_name, self.version)
            return _error(context, idx, 500, "internal error while generating; see the model log")
        context.set_response_status(200, "OK", idx=idx)
        context.set_response_content_type(idx, media_type)
        for key, value in headers.items():
            context.set_response_header(idx, key, value)
        log.info(
            "torchserve.generated seed=%s batch_size=%s format=%s ms=%.1f",
            headers["X-Seed"],
            headers["X-Batch-Size"],
            request.format.value,
            1000 * (time.monotonic() - started),
        )
        return payload

    def generate(self, request: GenerateRequest) -> tuple[bytes, str, dict[str, str]]:
        """(body, media type, X- headers) for a validated request: the ONNX service's semantics."""
        assert self.backend is not None
        if request.model is not None and request.model != self.model_name:
            raise UnknownModel(
                f"unknown model {request.model!r}: this TorchServe model serves "
                f"{self.model_name!r} (TorchServe serves each model under its own URL)"
            )
        plan = plan_generate(request, self.backend.signature)
        loaded = Loaded(self.model_name, self.version, self.backend, self.classifier)
        work = self.digits.answer(
            loaded, plan, request.min_confidence, max_candidates=request.max_candidates
        )
        answer = run_now(work)
        payload, media_type = encode_images(answer, request.format)
        return payload, media_type, answer_headers(answer)


def parse_request(item: Any, headers: Mapping[str, Any], limits: Limits) -> GenerateRequest:
    """One request of a TorchServe batch -> a validated GenerateRequest (or a RequestError).

    TorchServe hands over the POST body as ``{"body": ...}``; a form-encoded body arrives as its
    fields instead (``seed=7&batch_size=20``), read like the ONNX service's query parameters.
    It drops query strings, so a GET carries no parameters: defaults, as an empty JSON body.
    """
    fields = item if isinstance(item, Mapping) else {"body": item}
    if not any(key in fields for key in BODY_KEYS):
        if fields:
            return _parse_form(fields, limits)
        if _declared_length(headers) > 0:
            # curl -d '{...}' without a JSON content type: TorchServe's form decoder ate it.
            raise UnsupportedMediaType(NOT_JSON)
    content_type = _body_content_type(headers)
    return parse_body(GenerateRequest, request_body(fields, content_type), content_type, limits)


NOT_JSON = (
    "the request body was sent as a form but is not one: send JSON with "
    "Content-Type: application/json (curl: -H 'Content-Type: application/json')"
)


def request_body(fields: Mapping[str, Any], content_type: str | None) -> bytes:
    """The raw JSON body of one request, however TorchServe handed it over.

    TorchServe passes bytes, but decodes ``application/json`` bodies itself (to a dict, list,
    number...) and ``text/*`` bodies to ``str``; a decoded JSON value is serialised again so
    that ``parse_json`` judges every body the same way. No body: ``b""`` (defaults).
    """
    value = next((fields[key] for key in BODY_KEYS if key in fields), None)
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and not (content_type or "").startswith("application/json"):
        return value.encode("utf-8", errors="replace")
    return json.dumps(value).encode()


def _parse_form(fields: Mapping[str, Any], limits: Limits) -> GenerateRequest:
    if any(str(key).lstrip().startswith(("{", "[")) for key in fields):
        raise UnsupportedMediaType(NOT_JSON)
    values = {str(key): [_text(value)] for key, value in fields.items()}
    return parse_query(values, limits)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else json.dumps(value)


def _request_headers(context: Any, idx: int) -> Mapping[str, Any]:
    """Request headers, plus one ``{"content-type": ...}`` entry per body parameter."""
    try:
        headers = context.get_all_request_header(idx)
    except (AttributeError, IndexError, KeyError, TypeError):
        return {}
    return headers if isinstance(headers, Mapping) else {}


def _body_content_type(headers: Mapping[str, Any]) -> str | None:
    """The content type TorchServe recorded for the body (it decided how it decoded it)."""
    for key in BODY_KEYS:
        entry = headers.get(key)
        if isinstance(entry, Mapping):
            return str(entry.get("content-type") or "").lower()
    return None


def _declared_length(headers: Mapping[str, Any]) -> int:
    for key, value in headers.items():
        if key.lower() == "content-length" and isinstance(value, str) and value.isdigit():
            return int(value)
    return 0


def _error(context: Any, idx: int, status: int, detail: str) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    context.set_response_status(status, phrase, idx=idx)
    context.set_response_content_type(idx, JSON)
    return json.dumps({"detail": detail}).encode()


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise HandlerConfigError(f"cannot read {path.name} from the model archive: {exc}") from exc
    missing = [key for key in ("model_name", "version", "signature") if key not in manifest]
    if missing:
        raise HandlerConfigError(f"{path.name} lacks {', '.join(missing)}: not a registry manifest")
    return dict(manifest)


def _signature(manifest: Mapping[str, Any]) -> GeneratorSignature:
    try:
        return GeneratorSignature.from_dict(dict(manifest["signature"]))
    except (TypeError, ValueError) as exc:
        raise HandlerConfigError(
            f"{MANIFEST_NAME} has no usable generator signature ({exc}): republish the version"
        ) from exc


def _device(gpu_id: Any) -> str:
    """The GPU TorchServe assigned to this worker, else the CPU."""
    if gpu_id is not None and torch.cuda.is_available():
        return f"cuda:{int(gpu_id)}"
    return "cpu"


def _limits(model_config: Mapping[str, Any]) -> Limits:
    """Env (``DCGAN_SERVE_*``, as the ONNX service) over the .mar's model-config ``handler:``."""
    configured = _handler_section(model_config)
    return Limits(
        max_batch_size=_setting(
            MAX_BATCH_ENV, "max_batch_size", configured, DEFAULTS.max_batch_size, 1
        ),
        max_balance_images=DEFAULTS.max_balance_images,
        max_body_bytes=_setting(
            MAX_BODY_ENV, "max_body_bytes", configured, DEFAULTS.max_body_bytes, 1024
        ),
    )


def _max_candidates(model_config: Mapping[str, Any]) -> int:
    """Candidates per image of a filtered request: env over the model config, as the limits."""
    configured = _handler_section(model_config)
    return _setting(MAX_CANDIDATES_ENV, "max_candidates", configured, DEFAULT_MAX_CANDIDATES, 1)


def _handler_section(model_config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The .mar's model-config ``handler:`` section ({} when absent or not a mapping)."""
    section = model_config.get("handler") if isinstance(model_config, Mapping) else None
    return section if isinstance(section, Mapping) else {}


def _setting(env: str, key: str, configured: Mapping[str, Any], default: int, low: int) -> int:
    raw = os.environ.get(env, "")
    where, value = (env, raw) if raw else (f"model config handler.{key}", configured.get(key))
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low - 1
    if isinstance(value, bool) or number < low:
        raise HandlerConfigError(f"{where} is {value!r}, not a whole number >= {low}")
    return number


_service = GeneratorService()


def handle(data: list[Any] | None, context: Any) -> list[bytes] | None:
    """TorchServe's entry point: ``data=None`` initialises, a list is one batch of requests."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
