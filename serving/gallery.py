"""The page at ``/``: a row of generated digits per class, for people checking a model by eye."""

from __future__ import annotations

from html import escape

from models.contract import NUM_CLASSES

PER_CLASS = 10


def gallery_html(model: str | None, version: str | None, seed: int) -> str:
    if version is None:
        body = "<p>No model is loaded yet: promote a version to production and reload.</p>"
    else:
        rows = "\n".join(
            f'<tr><th>{digit}</th><td><img alt="digit {digit}" width="{PER_CLASS * 30 * 2}" '
            f'src="/generate?digits={digit}&amp;batch_size={PER_CLASS}&amp;seed={seed}'
            f'&amp;format=png"></td></tr>'
            for digit in range(NUM_CLASSES)
        )
        body = (
            f"<p>Model <b>{escape(model or '')}</b> version <b>{escape(version)}</b>, seed "
            f"{seed}. <a href='/?seed={seed + 1}'>Other digits</a> &middot; "
            "<a href='/docs'>API docs</a> &middot; <a href='/models'>manifest</a></p>"
            f"<table>{rows}</table>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dcgan-mnist-service</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{padding-right:1em}"
        "img{image-rendering:pixelated;background:#000}</style></head>"
        f"<body><h1>Synthetic MNIST digits</h1>{body}</body></html>"
    )
