"""Least privilege against the real S3 server (SeaweedFS identities, tests/s3_server.py): the
servers' read-only credential pulls, lists and verifies, and every write it tries is refused by the
server and changes nothing; the publisher's credential, which cannot administer the server, does
everything a publisher does."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from minio.error import S3Error

from models.registry import ModelRegistry, S3Store
from models.registry.errors import BadCredentials
from models.registry.signing import ManifestSigner, ManifestVerifier, generate_key_pair
from tests.models.conftest import MODEL, publish
from tests.s3_server import S3TestServer


def registry(
    s3_server: S3TestServer, bucket: str, identity: str, keys: tuple[Path, Path]
) -> ModelRegistry:
    private, public = keys
    return ModelRegistry(
        S3Store(bucket, s3_server.settings(identity)),
        MODEL,
        signer=ManifestSigner.from_file(private) if identity != "reader" else None,
        verifier=ManifestVerifier.from_files([public]),
    )


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_key_pair(tmp_path / "keys", "publisher")


def objects(s3_server: S3TestServer, bucket: str) -> dict[str, str]:
    listed = s3_server.client().list_objects(bucket, recursive=True)
    return {obj.object_name or "": obj.etag or "" for obj in listed}


def test_the_publisher_credential_publishes_promotes_and_deletes_without_admin_rights(
    s3_server: S3TestServer, s3_bucket: str, artifacts: dict[str, Path], keys: tuple[Path, Path]
) -> None:
    publisher = registry(s3_server, s3_bucket, "publisher", keys)
    publish(publisher, {"generator.onnx": artifacts["generator.onnx"]}, "v1")
    publish(publisher, {"samples.png": artifacts["samples.png"]}, "v2")
    assert publisher.promote("v2").version == "v2"
    publisher.delete("v1")
    assert [info.version for info in publisher.list_versions()] == ["v2"]
    # It may not create buckets (minio-init, with the root credential, does).
    with pytest.raises(S3Error) as denied:
        s3_server.client("publisher").make_bucket(f"{s3_bucket}-new")
    assert denied.value.code == "AccessDenied"


def test_the_read_only_credential_serves_but_cannot_change_anything(
    s3_server: S3TestServer,
    s3_bucket: str,
    artifacts: dict[str, Path],
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    publisher = registry(s3_server, s3_bucket, "publisher", keys)
    for version in ("v1", "v2", "v3"):  # v2: no alias points at it, so it may be deleted
        publish(publisher, {"generator.onnx": artifacts["generator.onnx"]}, version)
    publisher.promote("v1")
    reader = registry(s3_server, s3_bucket, "reader", keys)
    assert reader.resolve("production") == "v1"
    assert (reader.pull("production", tmp_path / "cache") / "generator.onnx").is_file()
    assert [info.version for info in reader.list_versions()] == ["v1", "v2", "v3"]
    before = objects(s3_server, s3_bucket)

    attempts: dict[str, Callable[[], object]] = {
        "publish": lambda: publish(reader, {"samples.png": artifacts["samples.png"]}, "v4"),
        "promote": lambda: reader.promote("v3"),
        "delete": lambda: reader.delete("v2"),
    }
    for action, attempt in attempts.items():
        with pytest.raises(BadCredentials, match="may not write to this bucket") as refused:
            attempt()
        assert refused.value.code == "AccessDenied", action
        assert "publisher's credential" in str(refused.value)
        assert objects(s3_server, s3_bucket) == before, f"{action} changed the bucket"

    # The server itself refuses, whatever client asks: raw PUT and DELETE of the minio SDK.
    client = s3_server.client("reader")
    for write in (
        lambda: client.put_object(s3_bucket, f"{MODEL}/x", io.BytesIO(b"x"), 1),
        lambda: client.remove_object(s3_bucket, f"{MODEL}/aliases/production.json"),
    ):
        with pytest.raises(S3Error) as denied:
            write()
        assert denied.value.code == "AccessDenied"
    assert objects(s3_server, s3_bucket) == before
