"""The TorchServe backend of /generate: handler, .mar builder, config and a process helper.

The handler answers like the ONNX Runtime service (same request parsing, seed contract and
encodings from ``serving.core.schemas``/``generation``/``encoding``); only the inference engine
differs.
This package must not import torch at import time except in ``handler`` (which TorchServe loads).
"""
