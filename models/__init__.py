"""What a model is and where it lives.

The torch-free parts (``latent``, ``signature``) are safe to import in the ONNX Runtime server,
which has no torch; the network definitions (``dcgan``, ``fc``, ``classifier``) need torch.
"""
