"""The local-directory object store: the same keys and guarantees as S3, on a file system."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from models.fileio import is_temp_name, temp_path_beside
from models.registry.errors import (
    BucketMissing,
    ObjectNotFound,
    PreconditionFailed,
)
from models.registry.store import CHUNK, JSON, OCTETS, ObjectInfo, ObjectStore, check_key

T = TypeVar("T")

_SMALL = 64 * 1024  # objects up to this size get a content hash as etag (aliases, manifests)


class LocalStore(ObjectStore):
    """Objects as files under a root directory, with the same keys as on S3 (the default store).

    Writes go to a temporary file beside the target and are renamed into place. Create-only writes
    use ``link()``, which fails if the name exists; compare-and-swap writes hold an exclusive
    ``flock`` on the object's directory (POSIX), so threads and processes on one host serialise.
    On network filesystems these guarantees depend on the filesystem's rename/link/flock.
    """

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.create = create
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _check_root(self, create: bool) -> None:
        if self.root.is_dir():
            return
        if self.root.exists() and not self.root.is_dir():  # (another thread may just create it)
            raise BucketMissing(f"registry root {self.root} exists but is not a directory")
        if not (create and self.create):
            how = (
                "nothing was published there yet (the first publish creates it)"
                if self.create
                else "creating it is not allowed here: create it, or check the path"
            )
            raise BucketMissing(f"registry directory {self.root} does not exist: {how}")
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _etag(path: Path, st: os.stat_result) -> str:
        if st.st_size <= _SMALL:  # content hash: no ABA when an inode number is reused
            return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"

    @contextlib.contextmanager
    def _dir_lock(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def ensure_ready(self, *, for_write: bool) -> None:
        self._check_root(create=for_write)

    def put_file(self, key: str, path: Path, content_type: str = OCTETS) -> None:
        self._retry_vanished_dir(lambda: self._put_file_once(key, path))

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str = JSON,
    ) -> str:
        return self._retry_vanished_dir(
            lambda: self._put_bytes_once(key, data, if_absent=if_absent, if_match=if_match)
        )

    @staticmethod
    def _retry_vanished_dir(write: Callable[[], T]) -> T:
        """Retry a write whose directory a concurrent delete removed (it prunes empty ones)."""
        for attempt in range(3):
            try:
                return write()
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _put_file_once(self, key: str, path: Path) -> None:
        self._check_root(create=True)
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_beside(dest)
        try:
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as fh:  # durable before the manifest that vouches for it
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _put_bytes_once(
        self, key: str, data: bytes, *, if_absent: bool, if_match: str | None
    ) -> str:
        self._check_root(create=True)
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_beside(dest)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            etag = self._etag(tmp, tmp.stat())  # rename keeps inode and mtime: same etag after
            if if_absent or if_match is not None:
                with self._dir_lock(dest.parent):
                    if if_absent:
                        try:
                            os.link(tmp, dest)  # atomic create-if-absent
                        except FileExistsError:
                            raise PreconditionFailed(key, self.location) from None
                    else:
                        try:
                            current = self._etag(dest, dest.stat())
                        except FileNotFoundError:
                            raise PreconditionFailed(key, self.location) from None
                        if current != if_match:
                            raise PreconditionFailed(key, self.location)
                        os.replace(tmp, dest)
            else:
                os.replace(tmp, dest)
            return etag
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> tuple[bytes, str]:
        self._check_root(create=False)
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, self.location) from None
        etag = (
            hashlib.md5(data, usedforsecurity=False).hexdigest()
            if len(data) <= _SMALL
            else self._etag(self._path(key), self._path(key).stat())
        )
        return data, etag

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        self._check_root(create=False)
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed below, generator-style
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, self.location) from None
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def stat(self, key: str) -> ObjectInfo | None:
        self._check_root(create=False)
        path = self._path(key)
        try:
            st = path.stat()
            if not path.is_file():
                return None
            return self._info(key, path, st)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._check_root(create=False)
        # Walk only below the deepest directory the prefix names, then filter by the full prefix.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(base_key) if base_key else self.root
        for dirpath, _dirs, names in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in names:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                    info = self._info(key, path, st)
                except FileNotFoundError:  # deleted or renamed meanwhile
                    continue
                yield info

    def delete(self, keys: Iterable[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        # Drop directories left empty, so a deleted version leaves no trace; never the root.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            directory = parent
            while directory != self.root and self.root in directory.parents:
                try:
                    directory.rmdir()
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                        break
                    raise
                directory = directory.parent

    def _info(self, key: str, path: Path, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag="" if is_temp_name(path.name) else self._etag(path, st),
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )
