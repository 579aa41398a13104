"""The model registry, one suite run against both stores: a local directory and a real S3 server
(SeaweedFS on loopback, see tests/s3_server.py). Kills and races use real processes and threads."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from models.registry import (
    AliasNotFound,
    AliasRecord,
    BadCredentials,
    BucketMissing,
    FileEntry,
    IntegrityError,
    InvalidName,
    LocalStore,
    ModelRegistry,
    ObjectStore,
    PublishInProgress,
    RegistryError,
    S3Store,
    StoreUnreachable,
    VersionExists,
    VersionInUse,
    VersionNotFound,
    sha256_file,
)
from models.registry.errors import SignatureError
from models.registry.names import (
    check_alias,
    check_file_name,
    check_model_name,
    check_version_id,
)
from models.registry.signing import ManifestSigner, ManifestVerifier, generate_key_pair
from tests.models.conftest import MODEL, Backend, KiB
from tests.models.conftest import publish as _publish
from tests.models.conftest import write_file as _write
from tests.s3_server import S3TestServer, empty_and_remove_bucket
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]

# --- publish / list / show / pull -----------------------------------------------------------------


def test_round_trip(backend: Backend, artifacts: dict[str, Path], tmp_path: Path) -> None:
    registry = backend.registry()
    manifest = registry.publish(
        artifacts,
        version="v1",
        signature={"latent_dim": 100, "conditional": True},
        metrics={"accuracy": 0.97, "fid": 9.5},
        training_config={"epochs": 2},
        dataset_md5={"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb"},
        code_version="abc123",
        library_versions={"torch": "2.13.0"},
        extra={"parity": {"onnx_max_abs": 1e-7}},
    )
    assert set(manifest.files) == set(artifacts)
    for name, path in artifacts.items():
        assert (manifest.files[name].sha256, manifest.files[name].size) == sha256_file(path)

    # Exactly the contract-3 layout: files, manifest, the latest alias; no claim left behind.
    expected = {f"{MODEL}/versions/v1/{name}" for name in [*artifacts, "manifest.json"]}
    assert set(backend.objects()) == expected | {f"{MODEL}/aliases/latest.json"}

    rows = registry.list_versions()
    assert [(r.version, r.aliases, r.metrics["fid"]) for r in rows] == [("v1", ["latest"], 9.5)]
    assert registry.show("latest") == registry.show("v1") == manifest
    assert registry.get_alias("latest").version == "v1"

    pulled = registry.pull("latest", tmp_path / "cache")
    assert pulled == tmp_path / "cache" / MODEL / "v1"
    for name, path in artifacts.items():
        assert (pulled / name).read_bytes() == path.read_bytes()
    assert json.loads((pulled / "manifest.json").read_bytes())["version"] == "v1"

    # A generated id is sortable by time; latest follows the newest publish.
    second = registry.publish({"samples.png": artifacts["samples.png"]})
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", second.version)
    assert [r.version for r in registry.list_versions()] == ["v1", second.version]
    assert registry.get_alias("latest").version == second.version


def test_existing_version_is_refused_and_nothing_changes(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    registry = backend.registry()
    _publish(registry, artifacts, "v1")
    before = backend.objects()
    other = {"generator.onnx": _write(tmp_path / "other.onnx", 10 * KiB, 99)}
    with pytest.raises(VersionExists, match=r"v1 .*already exists"):
        registry.publish(other, version="v1")
    assert backend.objects() == before
    for bad in ("a/b", "..", "x..y", ".hidden", "", "v" * 101):
        with pytest.raises(InvalidName):
            registry.publish(other, version=bad)
    with pytest.raises(InvalidName, match="reserved"):
        registry.publish({"manifest.json": other["generator.onnx"]}, version="v2")
    with pytest.raises(InvalidName):
        registry.publish({"../x": other["generator.onnx"]}, version="v2")
    assert backend.objects() == before


def test_sums_the_publisher_computed_are_kept_and_a_file_changed_since_is_refused(
    backend: Backend, artifacts: dict[str, Path]
) -> None:
    registry = backend.registry()
    onnx = artifacts["generator.onnx"]
    sha256, size = sha256_file(onnx)
    known = {"generator.onnx": FileEntry(sha256=sha256, size=size)}  # as an export records it
    manifest = registry.publish(artifacts, version="v1", hashed=known)
    assert {name: (e.sha256, e.size) for name, e in manifest.files.items()} == {
        name: sha256_file(path) for name, path in artifacts.items()
    }
    before = backend.objects()
    _write(onnx, size + 1, 1)  # changed after it was hashed
    with pytest.raises(RegistryError, match="changed since"):
        registry.publish(artifacts, version="v2", hashed=known)
    with pytest.raises(ValueError, match="not published"):
        registry.publish({"samples.png": artifacts["samples.png"]}, version="v2", hashed=known)
    assert backend.objects() == before


def test_version_without_manifest_is_invisible_and_cleaned_up(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    registry = backend.registry()
    _publish(registry, artifacts, "v1")
    orphan = f"{MODEL}/versions/orphan/"
    backend.store.put_file(orphan + "generator.onnx", artifacts["generator.onnx"])
    backend.store.put_bytes(orphan + "samples.png", b"png")

    assert [r.version for r in registry.list_versions()] == ["v1"]
    assert not registry.exists("orphan")
    with pytest.raises(VersionNotFound):
        registry.show("orphan")
    with pytest.raises(VersionNotFound):
        registry.pull("orphan", tmp_path / "cache")
    with pytest.raises(VersionNotFound):
        registry.promote("orphan")

    assert registry.cleanup() == []  # younger than the grace period: maybe a live publish
    assert any(key.startswith(orphan) for key in backend.objects())
    assert registry.cleanup(grace_period_s=0) == ["orphan"]
    assert not any(key.startswith(orphan) for key in backend.objects())
    assert [r.version for r in registry.list_versions()] == ["v1"]  # published one untouched
    assert registry.pull("v1", tmp_path / "cache").is_dir()


def test_tampered_file_is_refused(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    registry = backend.registry()
    manifest = _publish(registry, artifacts, "v1")
    tampered = bytearray(artifacts["generator.onnx"].read_bytes())
    tampered[1000] ^= 0xFF  # same size: only the checksum can tell
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(bytes(tampered))
    backend.store.put_file(f"{MODEL}/versions/v1/generator.onnx", evil)
    actual = sha256_file(evil)[0]

    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError) as caught:
        registry.pull("v1", cache)
    message = str(caught.value)
    assert "generator.onnx" in message
    assert manifest.files["generator.onnx"].sha256 in message
    assert actual in message
    # Nothing under the version's name, no staging directory left: nothing that looks valid.
    assert not (cache / MODEL / "v1").exists()
    assert list((cache / MODEL).iterdir()) == []


def test_valid_cache_is_reused_and_a_damaged_one_repaired(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    registry = backend.registry()
    _publish(registry, artifacts, "v1")
    cache = tmp_path / "cache"
    first = registry.pull("v1", cache)
    keys = {f"{MODEL}/versions/v1/{name}" for name in artifacts}
    assert backend.store.downloads == Counter(dict.fromkeys(keys, 1))

    assert registry.pull("latest", cache) == first
    assert registry.pull("v1", cache) == first
    assert backend.store.downloads == Counter(dict.fromkeys(keys, 1))  # no download at all

    (first / "checkpoint.pt").write_bytes(b"damaged")  # a damaged cache is replaced, not used
    again = registry.pull("v1", cache)
    assert (again / "checkpoint.pt").read_bytes() == artifacts["checkpoint.pt"].read_bytes()
    assert backend.store.downloads == Counter(dict.fromkeys(keys, 2))

    # Concurrent pulls into one empty cache all get the same complete directory.
    other = tmp_path / "cache2"
    with ThreadPoolExecutor(4) as pool:
        dirs = set(pool.map(lambda _: registry.pull("v1", other), range(4)))
    assert dirs == {other / MODEL / "v1"}
    assert sorted(p.name for p in (other / MODEL).iterdir()) == ["v1"]  # no staging left
    for name, path in artifacts.items():
        assert (other / MODEL / "v1" / name).read_bytes() == path.read_bytes()


def test_a_partial_pull_fetches_only_the_files_asked_for(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    registry = backend.registry()
    _publish(registry, artifacts, "v1")
    cache = tmp_path / "cache"
    onnx_only = registry.pull("v1", cache, files=["generator.onnx"])
    assert sorted(p.name for p in onnx_only.iterdir()) == ["generator.onnx", "manifest.json"]
    assert backend.store.downloads == Counter({f"{MODEL}/versions/v1/generator.onnx": 1})
    assert registry.pull("v1", cache, files=["generator.onnx"]) == onnx_only  # cached: reused
    everything = registry.pull("v1", cache)  # needs more: the directory is completed
    assert {p.name for p in everything.iterdir()} == {*artifacts, "manifest.json"}
    with pytest.raises(RegistryError, match=r"has no file 'weights\.bin'"):
        registry.pull("v1", cache, files=["weights.bin"])


@pytest.mark.parametrize("kind", ["parent", "absolute", "subdirectory", "hidden"])
def test_a_manifest_naming_a_path_outside_the_version_is_refused_before_any_write(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    registry = backend.registry()
    manifest = _publish(registry, artifacts, "v1")
    cache = tmp_path / "cache"
    victim = cache / MODEL / "escaped"  # where "../escaped" lands from the staging directory
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"must stay as it is")
    name = {
        "parent": "../escaped",
        "absolute": str(victim),
        "subdirectory": "sub/escaped",
        "hidden": ".escaped",
    }[kind]
    hostile = manifest.model_dump(mode="json")
    hostile["version"] = "v2"
    hostile["files"] = {name: hostile["files"]["generator.onnx"]}
    backend.store.put_bytes(f"{MODEL}/versions/v2/manifest.json", json.dumps(hostile).encode())
    with pytest.raises(InvalidName, match="invalid file name"):
        registry.pull("v2", cache)
    assert victim.read_bytes() == b"must stay as it is"
    assert sorted(p.name for p in (cache / MODEL).iterdir()) == ["escaped"]  # nothing else


def test_concurrent_publishes_of_one_id(backend: Backend, tmp_path: Path) -> None:
    registry = backend.registry()
    contenders = [
        {
            "checkpoint.pt": _write(tmp_path / f"c{n}" / "checkpoint.pt", 200 * KiB, 10 + n),
            "generator.onnx": _write(tmp_path / f"c{n}" / "generator.onnx", 50 * KiB, 20 + n),
        }
        for n in range(4)
    ]
    barrier = threading.Barrier(len(contenders))

    def attempt(files: dict[str, Path]) -> str:
        barrier.wait()
        try:
            registry.publish(files, version="v1")
        except (VersionExists, PublishInProgress) as exc:
            return type(exc).__name__
        return "published"

    with ThreadPoolExecutor(len(contenders)) as pool:
        outcomes = list(pool.map(attempt, contenders))
    assert outcomes.count("published") == 1, outcomes
    winner = contenders[outcomes.index("published")]
    pulled = registry.pull("v1", tmp_path / "cache")  # verifies every checksum
    for name, path in winner.items():
        assert (pulled / name).read_bytes() == path.read_bytes()
    assert not any(key.endswith(".claim.json") for key in backend.objects())


# --- an interrupted publish -----------------------------------------------------------------------

CHILD = r"""
import json, random, sys, time
from pathlib import Path
from models.registry import LocalStore, ModelRegistry, S3Store
from models.s3 import S3Settings

spec = json.loads(sys.argv[1])
if spec["kind"] == "local":
    store = LocalStore(spec["root"])
else:
    store = S3Store(spec["bucket"], S3Settings(_env_file=None))
registry = ModelRegistry(store, spec["model"])
if spec["mode"] == "publish":
    def hang(name, size):
        print("uploaded", name, flush=True)
        time.sleep(120)  # killed here, between two uploads
    files = {name: Path(path) for name, path in spec["files"].items()}
    registry.publish(files, version=spec["version"], on_file_uploaded=hang)
else:
    rng = random.Random(spec["seed"])
    for _ in range(spec["moves"]):
        record = registry.promote(rng.choice(spec["versions"]))
        print(record.to_json().decode().replace("\n", ""), flush=True)
"""


def _child(backend: Backend, **spec: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCGAN_S3_")}
    env.update(backend.env, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps({**backend.spec, "model": MODEL, **spec})],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            process.kill()
            pytest.fail(f"child printed nothing in {timeout_s} s")
    return process.stdout.readline()


def _kill_after_first_upload(backend: Backend, files: dict[str, Path], version: str) -> None:
    """A publisher killed (SIGKILL) right after its first file reached the store."""
    child = _child(
        backend, mode="publish", version=version, files={k: str(v) for k, v in files.items()}
    )
    try:
        line = _read_line(child, 30)
        assert line.startswith(f"uploaded {min(files)}"), line  # uploads go in name order
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def test_publish_killed_between_uploads_leaves_no_version(backend: Backend, tmp_path: Path) -> None:
    # Large enough for multipart uploads on S3 (> 5 MiB).
    files = {
        "checkpoint.pt": _write(tmp_path / "big" / "checkpoint.pt", 6 * 1024 * KiB, 7),
        "generator.onnx": _write(tmp_path / "big" / "generator.onnx", 6 * 1024 * KiB, 8),
        "samples.png": _write(tmp_path / "big" / "samples.png", 2 * KiB, 9),
    }
    _kill_after_first_upload(backend, files, "v9")

    registry = backend.registry()
    assert any("/versions/v9/" in key for key in backend.objects())  # leftovers exist...
    assert registry.list_versions() == []  # ...but no version
    with pytest.raises(VersionNotFound):
        registry.pull("v9", tmp_path / "cache")
    with pytest.raises(AliasNotFound):
        registry.get_alias("latest")
    with pytest.raises(PublishInProgress, match="claimed by a publish"):
        registry.publish(files, version="v9")  # the dead publisher's claim holds the id

    assert registry.cleanup(grace_period_s=0) == ["v9"]
    assert backend.objects() == {}
    registry.publish(files, version="v9")
    assert [r.version for r in registry.list_versions()] == ["v9"]


def test_a_retried_publish_takes_over_a_dead_publishers_expired_claim(
    backend: Backend, tmp_path: Path
) -> None:
    """A crashed flow run retried under its id: no manual cleanup once the claim's lease ran out."""
    files = {
        "checkpoint.pt": _write(tmp_path / "big" / "checkpoint.pt", 256 * KiB, 7),
        "generator.onnx": _write(tmp_path / "big" / "generator.onnx", 256 * KiB, 8),
    }
    _kill_after_first_upload(backend, files, "v9")
    leftovers = {key for key in backend.objects() if "/versions/v9/" in key}
    assert f"{MODEL}/versions/v9/checkpoint.pt" in leftovers and len(leftovers) >= 2
    live = backend.registry(claim_lease_s=3600)
    with pytest.raises(PublishInProgress, match="takes the claim over once it is 3600 s old"):
        live.publish({"generator.onnx": files["generator.onnx"]}, version="v9")
    time.sleep(1.5)  # the claim is last written at least 1.5 s ago: past a 1 s lease
    retried = backend.registry(claim_lease_s=1)
    retried.publish({"generator.onnx": files["generator.onnx"]}, version="v9")
    after = {key for key in backend.objects() if "/versions/v9/" in key}
    # the dead publisher's checkpoint is gone: the version is exactly what the retry published
    assert after == {f"{MODEL}/versions/v9/generator.onnx", f"{MODEL}/versions/v9/manifest.json"}
    assert set(retried.show("v9").files) == {"generator.onnx"}


# --- aliases --------------------------------------------------------------------------------------


def test_concurrent_alias_moves_never_corrupt_the_alias(
    backend: Backend, artifacts: dict[str, Path]
) -> None:
    registry = backend.registry()
    versions = ["v1", "v2", "v3"]
    for version in versions:
        _publish(registry, {"samples.png": artifacts["samples.png"]}, version)
    registry.promote("v1")
    key = f"{MODEL}/aliases/production.json"
    records: list[AliasRecord] = [registry.get_alias("production")]
    problems: list[str] = []
    done = threading.Event()
    lock = threading.Lock()

    def read_constantly() -> None:
        while not done.is_set():
            try:
                body = json.loads(backend.store.read(key))
                if body["version"] not in versions:
                    problems.append(f"alias points at {body['version']}")
            except Exception as exc:
                problems.append(f"unreadable alias: {exc!r}")

    def move(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(8):
                record = registry.promote(rng.choice(versions))
                with lock:
                    records.append(record)
        except Exception as exc:
            problems.append(f"move failed: {exc!r}")

    processes = [
        _child(backend, mode="moves", seed=100 + n, moves=8, versions=versions) for n in range(2)
    ]
    reader = threading.Thread(target=read_constantly)
    writers = [threading.Thread(target=move, args=(n,)) for n in range(4)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
        assert not thread.is_alive()
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        records += [AliasRecord.from_json(line.encode(), "child") for line in out.splitlines()]
    done.set()
    reader.join(10)

    assert problems == []
    final = registry.get_alias("production")
    assert final.version in versions
    # Compare-and-swap makes the moves one chain: each write's previous is the write before it.
    chain = sorted({(r.updated_at, r.version, r.previous) for r in records})
    assert len(chain) >= 2
    for (_, before, _), (_, after, previous) in itertools.pairwise(chain):
        assert previous == before != after
    assert chain[-1][1:] == (final.version, final.previous)


NAME_CHECKS = (check_model_name, check_version_id, check_alias, check_file_name)


@given(st.text(max_size=40), st.sampled_from(NAME_CHECKS))
def test_an_accepted_name_is_one_plain_path_step_and_nothing_appended_keeps_it_valid(
    text: str, check: Any
) -> None:
    try:
        check(text)
    except InvalidName:
        return
    assert text and text[0].isascii() and text[0].isalnum()
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in text), repr(text)
    assert ".." not in text
    for hostile in (text + "\n", text + "/x", "x/" + text, "/" + text, text + "\x00", "../" + text):
        with pytest.raises(InvalidName):
            check(hostile)


def test_names_a_writer_slipped_into_the_store_are_never_used(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    """Objects written straight into the bucket: an alias and a version id with a trailing
    newline (re.match(...$) used to accept both), an alias naming such a version, and a manifest
    whose version field is not a valid id."""
    registry = backend.registry()
    manifest = _publish(registry, {"samples.png": artifacts["samples.png"]}, "v1")
    registry.promote("v1")
    body = manifest.model_dump(mode="json")
    put = backend.store.put_bytes
    put(f"{MODEL}/aliases/production\n.json", AliasRecord(version="v1").to_json())
    put(f"{MODEL}/versions/v1\n/manifest.json", json.dumps(dict(body, version="v1\n")).encode())
    put(f"{MODEL}/versions/v2/manifest.json", json.dumps(dict(body, version="v2\n")).encode())

    assert [info.version for info in registry.list_versions()] == ["v1"]
    for ref in ("production\n", "v1\n"):
        with pytest.raises(InvalidName):
            registry.resolve(ref)
        with pytest.raises(InvalidName):
            registry.pull(ref, tmp_path / "cache")
    with pytest.raises(InvalidName):
        registry.get_alias("production\n")
    with pytest.raises(RegistryError, match="not a valid manifest"):
        registry.show("v2")
    assert registry.resolve("production") == "v1"
    # An alias naming such a version is unreadable: it is reported, to be repaired, not followed.
    put(f"{MODEL}/aliases/evil.json", json.dumps({"version": "v1\n"}).encode())
    with pytest.raises(RegistryError, match=r"evil\.json .* not a valid alias"):
        registry.resolve("evil")


def test_an_alias_never_shadows_a_version_id(backend: Backend, artifacts: dict[str, Path]) -> None:
    registry = backend.registry()
    for version in ("v1", "v2"):
        _publish(registry, {"samples.png": artifacts["samples.png"]}, version)
    registry.promote("v1", alias="stable")
    before = backend.objects()
    with pytest.raises(InvalidName, match="is a version id"):
        registry.promote("v1", alias="v2")
    with pytest.raises(InvalidName, match="is an alias"):
        _publish(registry, {"samples.png": artifacts["samples.png"]}, "stable")
    assert backend.objects() == before
    assert registry.resolve("v2") == "v2"


def test_promote_and_rollback(backend: Backend, artifacts: dict[str, Path]) -> None:
    registry = backend.registry()
    for version in ("v1", "v2", "v3"):
        _publish(registry, {"samples.png": artifacts["samples.png"]}, version)
    with pytest.raises(AliasNotFound, match="promote"):
        registry.get_alias("production")
    with pytest.raises(AliasNotFound):
        registry.rollback()

    assert registry.promote("v1").version == "v1"
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback()
    record = registry.promote("v2")
    assert (record.version, record.previous) == ("v2", "v1")
    assert registry.promote("v2") == record  # idempotent: keeps the rollback target
    assert registry.rollback().version == "v1"
    assert registry.get_alias("production").previous == "v2"
    assert registry.rollback().version == "v2"  # a second rollback undoes the first
    assert registry.promote("latest").version == "v3"  # an alias resolves to its version

    with pytest.raises(VersionNotFound):
        registry.promote("v404")
    assert registry.get_alias("production").version == "v3"
    with pytest.raises(InvalidName):
        registry.promote("v1", alias="Bad/Alias")


def test_promote_refuses_an_older_version_unless_allowed(
    backend: Backend, artifacts: dict[str, Path]
) -> None:
    registry = backend.registry()
    for version in ("v1", "v2"):
        _publish(registry, {"samples.png": artifacts["samples.png"]}, version)
    registry.promote("v2", allow_older=False)
    with pytest.raises(RegistryError, match=r"v1 .* is older than v2 .*--rollback"):
        registry.promote("v1", allow_older=False)
    assert registry.get_alias("production").version == "v2"
    assert registry.promote("v1", allow_older=True).previous == "v2"  # asked for: a rollback
    # An alias that points at nothing usable may be moved to any version.
    key = registry.layout.alias_key("production")
    registry.store.put_bytes(key, AliasRecord(version="v9", previous="v1").to_json())
    assert registry.promote("v1", allow_older=False).previous == "v9"


@pytest.fixture(scope="module")
def four_versions(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """v0..v3, published in this order on a local store; each example resets its alias."""
    root = tmp_path_factory.mktemp("four-versions")
    registry = ModelRegistry(LocalStore(root / "registry"), MODEL)
    sample = _write(root / "samples.png", 3 * KiB, 4)
    for index in range(4):
        _publish(registry, {"samples.png": sample}, f"v{index}")
    return registry


@settings(max_examples=60, deadline=None)
@given(moves=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=10))
def test_an_alias_moves_back_in_time_only_when_asked(
    four_versions: ModelRegistry, moves: list[tuple[int, bool]]
) -> None:
    registry = four_versions
    registry.store.delete([registry.layout.alias_key("staging")])
    current: int | None = None
    for index, back in moves:
        before = registry.aliases().get("staging")
        if current is not None and index < current and not back:
            with pytest.raises(RegistryError, match=rf"v{index} .* is older than v{current}"):
                registry.promote(f"v{index}", "staging", allow_older=False)
            assert registry.aliases().get("staging") == before
            continue
        record = registry.promote(f"v{index}", "staging", allow_older=back)
        if index == current:
            assert record == before  # already there: nothing moves
        else:
            assert record.version == f"v{index}"
            assert record.previous == (None if current is None else f"v{current}")
        current = index


def test_rollback_with_trusted_keys_goes_only_to_a_signed_version(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    private, public = generate_key_pair(tmp_path / "keys", "publisher")
    unverified = backend.registry()
    _publish(unverified, {"samples.png": artifacts["samples.png"]}, "v1")  # unsigned
    unverified.promote("v1")
    signer = backend.registry(signer=ManifestSigner.from_file(private))
    _publish(signer, {"samples.png": artifacts["samples.png"]}, "v2")
    consumer = backend.registry(verifier=ManifestVerifier.from_files([public]))
    assert consumer.promote("v2").previous == "v1"
    with pytest.raises(SignatureError, match=r"v1 .*is not signed"):
        consumer.rollback()  # servers with these keys would refuse v1
    assert consumer.get_alias("production").version == "v2"
    assert unverified.rollback().version == "v1"  # without keys it works as it always did


def test_delete_is_refused_while_aliased(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    registry = backend.registry()
    for version in ("v1", "v2"):
        _publish(registry, artifacts, version)  # latest -> v2
    registry.promote("v1")
    with pytest.raises(VersionInUse, match="production"):
        registry.delete("v1")
    with pytest.raises(VersionInUse, match="latest"):
        registry.delete("v2")
    assert [r.version for r in registry.list_versions()] == ["v1", "v2"]

    registry.promote("v2")
    registry.delete("v1")
    assert [r.version for r in registry.list_versions()] == ["v2"]
    assert not any("/versions/v1/" in key for key in backend.objects())
    with pytest.raises(VersionNotFound):
        registry.pull("v1", tmp_path / "cache")
    with pytest.raises(VersionNotFound):
        registry.delete("v1")
    with pytest.raises(VersionNotFound, match="was deleted"):
        registry.rollback()  # production's previous was v1


# --- store failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_missing_bucket(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    store: ObjectStore
    if kind == "local":
        store = LocalStore(tmp_path / "nowhere", create=False)
        creating: ObjectStore = LocalStore(tmp_path / "nowhere", create=True)
    else:
        server: S3TestServer = request.getfixturevalue("s3_server")
        bucket = f"missing-{uuid.uuid4().hex[:12]}"
        store = S3Store(bucket, server.settings(), create_bucket=False)
        creating = S3Store(bucket, server.settings(), create_bucket=True)
        request.addfinalizer(lambda: empty_and_remove_bucket(server.client(), bucket))
    registry = ModelRegistry(store, MODEL)
    with pytest.raises(BucketMissing, match=r"does not exist.*not allowed"):
        registry.publish(artifacts, version="v1")
    with pytest.raises(BucketMissing, match="does not exist"):
        registry.list_versions()

    created = ModelRegistry(creating, MODEL)
    created.publish(artifacts, version="v1")  # allowed: created on the first publish
    assert [r.version for r in ModelRegistry(store, MODEL).list_versions()] == ["v1"]


def test_s3_unreachable_endpoint_is_named(
    s3_server: S3TestServer, artifacts: dict[str, Path]
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    settings = s3_server.settings(endpoint=endpoint, connect_timeout_s=0.5, max_retries=0)
    registry = ModelRegistry(S3Store("models", settings), MODEL)
    started = time.monotonic()
    with pytest.raises(StoreUnreachable, match=re.escape(endpoint)):
        registry.list_versions()
    with pytest.raises(StoreUnreachable, match=re.escape(endpoint)):
        registry.publish(artifacts, version="v1")
    assert time.monotonic() - started < 5


def test_s3_bad_credentials_say_so(s3_server: S3TestServer, s3_bucket: str) -> None:
    settings = s3_server.settings(secret_key=SecretStr("not-the-secret"))
    registry = ModelRegistry(S3Store(s3_bucket, settings), MODEL)
    with pytest.raises(BadCredentials, match=r"refused the credentials.*DCGAN_S3_SECRET_KEY"):
        registry.list_versions()


def test_local_store_keys_cannot_escape(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    for key in ("../x", "a/../../x", "/abs", "a//b", "a\\b", ""):
        with pytest.raises(InvalidName):
            store.put_bytes(key, b"x")
    assert not (tmp_path / "x").exists()
