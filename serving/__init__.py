"""The /generate service: ONNX Runtime (torch-free) and the TorchServe backend, plus the client."""
