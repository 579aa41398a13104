"""A user's labelled image dataset on disk, read as untrusted input: ImageFolder, ``.npz``, IDX,
Hugging Face Parquet and ``save_to_disk``. Training (`dcgan train --data`) and balancing
(`dcgan balance`) read through the same code, so a dataset refused by one is refused by both.

``files``: the file-system rules (no link followed, limits); ``readers``: format detection and
the readers; ``npz``, ``arrow``, ``hf``: the formats that need their own header checks;
``recipe``: how to train on a dataset `dcgan balance` filled (weights, real prior, card text).
"""
