"""Container health check for TorchServe: healthy only while the model has a READY worker.

TorchServe's own `/ping` answers "Healthy" even when every Python worker of the model crashes at
start (seen in the container when a dependency was missing), so the image asks the management API
(bound to 127.0.0.1 inside the container) for the model's workers instead.

    python -m serving.torchserve.healthcheck [MODEL]   # exit 0 healthy, 1 not
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"


def worker_states(management_url: str, model: str, timeout_s: float = 4.0) -> list[str]:
    """The status of every worker of every version of `model` (READY, STARTED, UNLOADING...)."""
    url = f"{management_url}/models/{model}/all"
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        versions = json.load(answer)
    return [str(w.get("status")) for version in versions for w in version.get("workers", [])]


def main(argv: list[str]) -> int:
    model = argv[0] if argv else os.environ.get("DCGAN_REGISTRY_MODEL_NAME", "cdcgan-mnist")
    url = os.environ.get("DCGAN_TORCHSERVE_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL)
    try:
        states = worker_states(url, model)
    except Exception as error:  # any failure to ask means not healthy
        print(f"unhealthy: {model}: {error}", file=sys.stderr)
        return 1
    if "READY" not in states:
        described = ", ".join(states) or "none"
        print(f"unhealthy: {model}: no READY worker ({described})", file=sys.stderr)
        return 1
    print(f"healthy: {model}: {states.count('READY')} READY worker(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
