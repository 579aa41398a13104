"""What the registry assumes of S3, checked against the real S3 server behind a proxy that
misbehaves as some servers and networks do: preconditions ignored, answers lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.registry import ModelRegistry, S3Store, StoreError
from tests.models.conftest import MODEL, publish
from tests.s3_server import S3TestServer
from tests.support.s3_proxy import Misbehaviour, misbehaving_proxy


@pytest.fixture
def rules(s3_server: S3TestServer) -> Misbehaviour:
    return Misbehaviour(s3_server.access_key, s3_server.secret_key)


@pytest.fixture
def proxied(s3_server: S3TestServer, s3_bucket: str, rules: Misbehaviour) -> Iterator[S3Store]:
    with misbehaving_proxy(s3_server.endpoint, rules) as endpoint:
        yield S3Store(s3_bucket, s3_server.settings(endpoint=endpoint))


def objects(s3_server: S3TestServer, bucket: str) -> list[str]:
    listed = s3_server.client().list_objects(bucket, recursive=True)
    return sorted(obj.object_name or "" for obj in listed)


def test_a_server_that_ignores_preconditions_gets_no_write(
    proxied: S3Store,
    rules: Misbehaviour,
    s3_server: S3TestServer,
    s3_bucket: str,
    artifacts: dict[str, Path],
) -> None:
    rules.ignore_conditions = True
    registry = ModelRegistry(proxied, MODEL)
    with pytest.raises(StoreError, match=r"ignores If-None-Match and If-Match on PUT") as info:
        publish(registry, {"samples.png": artifacts["samples.png"]}, "v1")
    assert proxied.endpoint in str(info.value)
    assert objects(s3_server, s3_bucket) == []  # not a file, not the check's own object
    rules.ignore_conditions = False  # the same server honouring them: publishing works
    publish(registry, {"samples.png": artifacts["samples.png"]}, "v1")
    assert registry.exists("v1")


def test_lost_answers_to_conditional_writes_are_not_read_as_someone_elses(
    proxied: S3Store,
    rules: Misbehaviour,
    s3_server: S3TestServer,
    s3_bucket: str,
    artifacts: dict[str, Path],
) -> None:
    registry = ModelRegistry(proxied, MODEL)
    proxied.ensure_ready(for_write=True)  # the preconditions check passes first
    rules.drop_answers = 10  # every conditional write of the publish: claim, manifest, latest
    publish(registry, {"samples.png": artifacts["samples.png"]}, "v1")
    assert any(path.endswith("/.claim.json") for path in rules.dropped), rules.dropped
    assert any(path.endswith("/manifest.json") for path in rules.dropped), rules.dropped
    assert registry.exists("v1") and registry.get_alias("latest").version == "v1"
    assert registry.promote("v1").version == "v1"  # an alias write whose answer is lost too
    stored = objects(s3_server, s3_bucket)
    assert not [name for name in stored if name.endswith(".claim.json")], stored
