"""The pages people look at, rendered by a real browser (Debian's chromium, headless) that can
resolve no host name, so that it reaches nothing but the server on loopback: /docs and /redoc
(their scripts served by the service itself, serving/api/docs_ui.py) and the gallery at /.

A page whose scripts came from a CDN stays blank here, as it does on a machine without internet.
Without chromium on PATH these tests are skipped and say so; CI installs it (scripts/chromium.sh).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from models.registry import LocalStore, ModelRegistry
from serving.api.app import create_app
from tests.serving.conftest import MODEL, settings
from tests.serving.live import serving

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: scripts/chromium.sh installs Debian's (CI runs it)",
)
# Every host name resolves to nothing except the loopback address the server listens on.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
WINDOW = (1000, 1400)  # the gallery's ten rows of one model fit in it


@pytest.fixture(scope="module")
def url(published_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service under uvicorn, serving v1 of the published registry (a copy)."""
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(published_registry, root / "registry")
    registry = ModelRegistry(LocalStore(root / "registry"), MODEL)
    with serving(create_app(settings(), registry, cache_dir=root / "cache")) as base:
        yield base


def chromium(url: str, tmp_path: Path, *flags: str) -> str:
    """Load ``url`` headless and offline, give its scripts 10 s of virtual time; its stdout."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root; the pages are our own
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        OFFLINE,
        "--virtual-time-budget=10000",
        *flags,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_swagger_ui_renders_every_operation_offline(url: str, tmp_path: Path) -> None:
    dom = chromium(f"{url}/docs", tmp_path, "--dump-dom")
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    operations = sorted((method, path) for path, item in paths.items() for method in item)
    # Swagger UI draws one "opblock" per operation, its method in the class and path in data-path
    # (none of it is in the page the server sends: only its scripts put it there).
    shown = re.findall(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]+)"', dom, re.S)
    assert sorted(shown) == operations, dom[-3000:]
    assert ("post", "/generate") in shown


def test_redoc_renders_every_operation_offline(url: str, tmp_path: Path) -> None:
    dom = chromium(f"{url}/redoc", tmp_path, "--dump-dom")
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    operation_ids = {op["operationId"] for item in paths.values() for op in item.values()}
    # ReDoc draws the document's title as the heading and a section per operation, by its id
    # (under its tag's, for a tagged one).
    assert re.search(r"<h1[^>]*>dcgan-mnist-service", dom), dom[-3000:]
    assert set(re.findall(r'<div id="(?:tag/[^"]*/)?operation/([^"]+)"', dom)) == operation_ids


def test_gallery_shows_the_generated_images(url: str, tmp_path: Path) -> None:
    dom = chromium(f"{url}/", tmp_path, "--dump-dom")
    images = re.findall(r'<img [^>]*width="(\d+)" src="([^"]+)"', dom)  # as gallery.py writes
    sources = [unescape(src) for _, src in images]
    assert len(sources) == 10 and all(f"model={MODEL}" in src for src in sources), dom

    # The images the page asked for (contract 6: the same bytes the browser got), and the pixels
    # they put on screen at their <img> width: nearest-neighbour scaling keeps their grey levels,
    # so a rendered page holds about scale^2 as many pixels of those levels as the PNGs.
    served = [Image.open(io.BytesIO(httpx.get(f"{url}{src}").content)) for src in sources]
    scale = int(images[0][0]) / served[0].width
    grey = [np.asarray(image.convert("L")) for image in served]
    expected = scale**2 * sum(int(((pixels > 0) & (pixels < 255)).sum()) for pixels in grey)
    assert expected > 100_000, "the model's images are blank: nothing to look for"

    shot = tmp_path / "gallery.png"
    window = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    chromium(f"{url}/", tmp_path, f"--screenshot={shot}", window, "--force-device-scale-factor=1")
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    drawn = (red == green) & (green == blue) & (red > 0) & (red < 255)
    # A page whose images did not load shows their alt text on black bars: a few thousand such
    # pixels (antialiased text), where the loaded page has the images' hundreds of thousands.
    assert drawn.sum() > 0.9 * expected, (int(drawn.sum()), expected, shot)
