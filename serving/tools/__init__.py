"""Client-side tools the server never runs: the HTTP client and filling a dataset's rare
classes on disk (its formats, journal and Hugging Face datasets)."""
