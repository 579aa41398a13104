"""schemathesis against the real server process: every check, over a thousand generated requests.

The server is ``dcgan serve`` started as a user would (environment settings, a published local
registry), with limits small enough that every schema-valid /balance fits (10 classes x 64 <=
640 images): then "valid data is accepted" holds without exceptions, alongside "invalid data is
rejected", "no 5xx", status codes, content types, headers and bodies as documented, and the
admin route's auth. The KServe V2 operations are in the run with the served model's name and
version as documented path values, so their bodies reach the decoder; a valid infer request that
carries Inference-Header-Content-Length is sent with the binary data extension (the hooks in
test_v2_document.py). A fixed seed keeps CI repeatable; DCGAN_FUZZ_SEED explores others.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import test_v2_document
from tests.serving.live import ServerProcess, dcgan_serve

TOKEN = "fuzz-admin-token-9f3c"
MIN_CASES = 1000


@pytest.fixture
def server(published_registry: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    limits: dict[str, Any] = {
        "max_batch_size": "64",
        "max_class_count": "64",
        "max_balance_images": "640",
    }
    with dcgan_serve(
        published_registry,
        tmp_path,
        admin_token=TOKEN,
        max_queue_images="1024",
        workers="1",
        threads="1",
        **limits,
    ) as running:
        yield running
        assert running.process.poll() is None, "the server died:\n" + running.log.read_text()


def test_schemathesis_finds_nothing_in_a_thousand_requests(server: ServerProcess) -> None:
    url, log = server.url, server.log
    seed = os.environ.get("DCGAN_FUZZ_SEED", "20261201")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "200",  # per operation (19), besides the coverage and stateful phases: about 10,000
        "--seed",
        seed,
        "--workers",
        "1",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--request-timeout",
        "60",
        "--no-color",
    ]
    binary_log = log.parent / "binary-requests.log"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": test_v2_document.__file__,
        test_v2_document.BINARY_LOG: str(binary_log),
    }
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=log.parent, env=env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated, output[-3000:]
    assert int(generated.group(1)) >= MIN_CASES, output[-3000:]
    assert generated.group(1) == generated.group(2), output[-3000:]
    assert httpx.get(f"{url}/healthz").status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    # (/readyz answers 503 while the model loads: that is readiness, documented, not an error.)
    failed = re.findall(r'dcgan_requests_total\{route="(?!/readyz")[^}]*status="5\d\d"\}', metrics)
    assert not failed, metrics
    assert "Traceback" not in log.read_text()
    # The V2 bodies reached the decoder (answered and refused), some the binary way.
    for route in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        for status in ("200", "400"):
            assert f'dcgan_requests_total{{route="{route}",status="{status}"}}' in metrics, route
    assert binary_log.exists() and len(binary_log.read_text().splitlines()) >= 10
