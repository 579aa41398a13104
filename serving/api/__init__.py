"""The HTTP app of the ONNX Runtime service: the app and its routes, their dependencies, the
OpenAPI document, metrics, the uvicorn server, the gallery and the KServe V2 body codec."""
