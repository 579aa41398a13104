"""The page at ``/``: a row of generated images per class for each served model, for people
checking the models by eye."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from models.contract import NUM_CLASSES

PER_CLASS = 10


def _section(model: str, version: str | None, seed: int) -> str:
    title = f"<h2>{escape(model)}" + (
        f" <small>version {escape(version)}</small>" if version else ""
    )
    if version is None:
        return f"{title}</h2><p>No version loaded yet: promote one and reload.</p>"
    query = f"model={quote(model)}&amp;batch_size={PER_CLASS}&amp;seed={seed}&amp;format=png"
    rows = "\n".join(
        f'<tr><th>{label}</th><td><img alt="{escape(model)} class {label}" '
        f'width="{PER_CLASS * 30 * 2}" src="/generate?digits={label}&amp;{query}"></td></tr>'
        for label in range(NUM_CLASSES)
    )
    return f"{title}</h2><table>{rows}</table>"


def gallery_html(models: list[tuple[str, str | None]], seed: int) -> str:
    """``models``: each served model's name and loaded version (None: not loaded yet)."""
    sections = "\n".join(_section(model, version, seed) for model, version in models)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dcgan-mnist-service</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{padding-right:1em}"
        "img{image-rendering:pixelated;background:#000}</style></head>"
        f"<body><h1>Synthetic digits</h1><p>Seed {seed}. <a href='/?seed={seed + 1}'>Other "
        "images</a> &middot; <a href='/docs'>API docs</a> &middot; <a href='/models'>models</a>"
        f"</p>{sections}</body></html>"
    )
