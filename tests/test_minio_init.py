"""docker/minio-init.py against the real S3 server: the users' rights are checked, a user with
the wrong rights fails the init (and what it should not have been able to write is gone again),
and a server without MinIO's admin API gets no admin writes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.s3_server import S3TestServer, empty_and_remove_bucket

REPO = Path(__file__).resolve().parents[1]
INIT = REPO / "docker" / "minio-init.py"


@pytest.fixture(scope="module")
def minio_init() -> ModuleType:
    spec = importlib.util.spec_from_file_location("minio_init", INIT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stack_buckets(s3_server: S3TestServer, minio_init: ModuleType) -> Iterator[None]:
    """`models` and `datasets` as minio-init makes them; those made here are removed after."""
    client = s3_server.client()
    made = [bucket for bucket in minio_init.BUCKETS if not client.bucket_exists(bucket)]
    for bucket in made:
        client.make_bucket(bucket)
    try:
        yield
    finally:
        for bucket in made:
            empty_and_remove_bucket(client, bucket)


def _users(s3_server: S3TestServer, publisher: str, reader: str) -> dict[str, tuple[str, str]]:
    """minio-init's users, with the keys of the named test-server identities."""
    chosen = {"dcgan-publisher": publisher, "dcgan-reader": reader}
    return {
        policy: (s3_server.credential(name).access_key, s3_server.credential(name).secret_key)
        for policy, name in chosen.items()
    }


def _leftovers(s3_server: S3TestServer, minio_init: ModuleType) -> list[str]:
    client = s3_server.client()
    names = [
        str(obj.object_name)
        for bucket in minio_init.BUCKETS
        for obj in client.list_objects(bucket, prefix=minio_init._CHECK_PREFIX, recursive=True)
    ]
    return names + [b.name for b in client.list_buckets() if b.name.startswith("dcgan-access")]


@pytest.mark.usefixtures("stack_buckets")
def test_the_right_users_pass(s3_server: S3TestServer, minio_init: ModuleType) -> None:
    minio_init.check_users(s3_server.settings(), _users(s3_server, "publisher", "reader"))
    assert _leftovers(s3_server, minio_init) == []


@pytest.mark.usefixtures("stack_buckets")
@pytest.mark.parametrize(
    ("publisher", "reader", "error"),
    [
        # A reader that can write (here: the admin's keys) is caught, its write undone.
        ("publisher", "admin", "dcgan-reader may write to s3://models"),
        # A publisher that may read and write everything is caught at its first excess right.
        ("admin", "reader", "dcgan-publisher may write to s3://datasets"),
        # A publisher without write access cannot publish: caught before any flow run.
        ("reader", "reader", "dcgan-publisher may not write to s3://models: AccessDenied"),
    ],
)
def test_wrong_rights_fail_and_leave_nothing(
    s3_server: S3TestServer, minio_init: ModuleType, publisher: str, reader: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        minio_init.check_users(s3_server.settings(), _users(s3_server, publisher, reader))
    assert _leftovers(s3_server, minio_init) == []


def test_no_admin_writes_where_there_is_no_minio_admin_api(
    s3_server: S3TestServer, minio_init: ModuleType
) -> None:
    before = {bucket.name for bucket in s3_server.client().list_buckets()}
    assert minio_init.admin_client(s3_server.settings()) is None
    assert {bucket.name for bucket in s3_server.client().list_buckets()} == before


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("DCGAN_INIT_READER_SECRET_KEY", "change-me-s3-reader-secret-key", "placeholder"),
        ("DCGAN_INIT_READER_SECRET_KEY", "short", "shorter than 8"),
        ("DCGAN_INIT_READER_ACCESS_KEY", None, "set both DCGAN_INIT_READER_ACCESS_KEY"),
    ],
)
def test_bad_user_settings_exit_2_with_one_line(
    s3_server: S3TestServer, setting: str, value: str | None, error: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        **s3_server.env(),
        "DCGAN_INIT_READER_ACCESS_KEY": "reader-user",
        "DCGAN_INIT_READER_SECRET_KEY": "a-long-enough-reader-secret",
    }
    if value is None:
        del env[setting]
    else:
        env[setting] = value
    done = subprocess.run(
        [sys.executable, str(INIT)], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and error in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
