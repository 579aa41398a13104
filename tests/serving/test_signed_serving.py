"""Only what the publisher signed is served: `dcgan serve` and `dcgan models pull` with trusted keys
(real processes, settings from the environment) refuse a version someone else put in the registry,
and the server keeps serving the signed one."""

from __future__ import annotations

from pathlib import Path

import httpx

from models.registry import LocalStore, ModelRegistry
from models.registry.signing import ManifestSigner, generate_key_pair, raw_base64
from tests.serving.conftest import MODEL, TOKEN
from tests.serving.live import dcgan_serve
from tests.test_cli import dcgan


def sign_in_place(registry_dir: Path, version: str, private_key: Path) -> None:
    """What publishing with DCGAN_REGISTRY_SIGNING_KEY writes beside the manifest."""
    version_dir = registry_dir / MODEL / "versions" / version
    signature = ManifestSigner.from_file(private_key).sign(
        (version_dir / "manifest.json").read_bytes()
    )
    (version_dir / "manifest.sig").write_bytes(signature)


def test_the_server_and_pull_use_only_signed_versions(registry_dir: Path, tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "keys", "publisher")
    sign_in_place(registry_dir, "v1", private)  # production; v2 stays unsigned
    one_line = raw_base64(ManifestSigner.from_file(private).private_key.public_key())
    inline = {"DCGAN_REGISTRY_TRUSTED_KEYS": one_line}  # as compose's .env passes it
    with dcgan_serve(registry_dir, tmp_path, env=inline, admin_token=TOKEN) as server:
        body = {"seed": 1, "batch_size": 2, "format": "npy"}
        assert httpx.post(f"{server.url}/generate", json=body).headers["x-model-version"] == "v1"
        # Someone with write access to the bucket, but not the key, promotes v2.
        ModelRegistry(LocalStore(tmp_path / "served-registry"), MODEL).promote("v2")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        refused = httpx.post(f"{server.url}/admin/reload", headers=auth, timeout=60)
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "is not signed" in detail and "still serving v1" in detail, detail
        answer = httpx.post(f"{server.url}/generate", json=body)
        assert answer.status_code == 200 and answer.headers["x-model-version"] == "v1"
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["version"] == "v1" and "is not signed" in ready["last_error"]

    env = {"DCGAN_REGISTRY_TRUSTED_KEYS": str(public), "DCGAN_REGISTRY_URI": str(registry_dir)}
    pulled = dcgan("models", "pull", "v1", "--cache-dir", str(tmp_path / "pulled"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    refused_pull = dcgan("models", "pull", "v2", "--cache-dir", str(tmp_path / "pulled"), env=env)
    assert refused_pull.returncode == 2
    assert refused_pull.stderr.count("\n") == 1 and "is not signed" in refused_pull.stderr
    assert not (tmp_path / "pulled" / MODEL / "v2").exists()
