"""Support for tests and benchmarks (not part of the product): free ports, a private TorchServe."""
