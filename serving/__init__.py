"""The /generate service: ``core`` (what every protocol shares), ``api`` (the ONNX Runtime HTTP
app, torch-free), ``torchserve`` (the TorchServe backend) and ``tools`` (client-side tools)."""
