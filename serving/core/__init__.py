"""The service every protocol shares: request definitions, plans, the one digit service, the
batcher, the filter, encodings, errors and the models' lifecycle on ONNX Runtime."""
