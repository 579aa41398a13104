"""A dataset is untrusted input: how `dcgan balance` touches its files.

- **No link is ever followed**, not even one pointing inside the dataset: a link anywhere in what
  is read or copied is refused with one line naming it (PATH itself, named by the user, is
  resolved once). Only regular files are read or copied; FIFOs, sockets and devices are refused.
- A tree is checked once by walking it with ``lstat`` (:func:`walk`); every file is then opened
  with ``O_NOFOLLOW`` and checked again with ``fstat`` (:func:`open_regular`), so a file swapped
  for a link or a FIFO in between is refused too. (A dataset rewritten by another process while
  the command runs is otherwise not defended against.)
- Every size is checked against :class:`DatasetLimits` before it is allocated or copied.
- Staging directories are locked (``flock``) while their run lives, so what a killed run left
  behind is told apart from a live run's and removed (:func:`remove_stale`).
- Messages name files with control characters escaped (:func:`shown`): one error, one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, BinaryIO

from models.errors import DatasetError
from models.fileio import CHUNK

LINK_REFUSED = "a symbolic link; links in a dataset are never followed (replace it with the file)"


@dataclass(frozen=True)
class DatasetLimits:
    """What one dataset may make `dcgan balance` read, hold and copy."""

    max_images: int = 1_000_000
    max_pixel_bytes: int = 1 << 30  # all images decoded (MNIST's 60,000: 47 MB)
    max_side: int = 4096  # an image's height and width, where no model size is given
    max_file_bytes: int = 1 << 30  # one file read whole (Parquet, Arrow, metadata.jsonl)
    max_image_file_bytes: int = 4 << 20  # one PNG or JPEG
    max_json_bytes: int = 1 << 20  # save_to_disk's state.json and dataset_info.json
    max_tree_bytes: int = 8 << 30  # every file of an ImageFolder, copied into --out
    max_entries: int = 2_000_000  # files and directories in an ImageFolder
    max_depth: int = 32  # directory levels in an ImageFolder


def shown(text: object) -> str:
    """``text`` as one printable line: control characters, undecodable bytes and the like are
    escaped, so a file name holding a newline cannot split (or forge) an error line."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


def refused(message: str) -> DatasetError:
    """The DatasetError for ``message``, made one printable line."""
    return DatasetError(shown(message))


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words."""
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def lstat(path: Path) -> os.stat_result | None:
    """``path``'s own status (a link's, not its target's); None if nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise refused(f"{path}: cannot read ({exc.strerror})") from None


def require_kind(path: Path, st: os.stat_result, want: Callable[[int], bool], what: str) -> None:
    """Refuse ``path`` unless it is ``what`` (a link is named as one)."""
    if stat.S_ISLNK(st.st_mode):
        raise refused(f"{path}: {LINK_REFUSED}")
    if not want(st.st_mode):
        raise refused(f"{path}: a {kind_of(st.st_mode)}, not a {what}")


def resolve(path: Path) -> Path:
    """The dataset path the user named, with its links resolved once (nothing inside it will be)."""
    try:
        return path.resolve(strict=True)
    except FileNotFoundError:
        raise refused(f"{path}: no such file or directory") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop (Python 3.11)
        raise refused(f"{path}: cannot resolve ({exc})") from None


@contextlib.contextmanager
def open_regular(path: Path, limit: int) -> Iterator[tuple[BinaryIO, int]]:
    """``path`` opened for reading, and its size: a regular file that is no link, of at most
    ``limit`` bytes; refused otherwise (a FIFO or device is never even opened)."""
    st = lstat(path)
    if st is None:
        raise refused(f"{path}: no such file")
    require_kind(path, st, stat.S_ISREG, "regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refused(f"{path}: cannot open ({exc.strerror})") from None
    with open(fd, "rb", closefd=True) as stream:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
            raise refused(f"{path}: changed while being read")
        if now.st_size > limit:
            raise refused(f"{path}: {now.st_size} bytes, more than the limit of {limit}")
        yield stream, now.st_size


def json_object(text: str | bytes, where: str) -> dict[str, Any]:
    """One JSON object from the user's data, or one line saying why not (deep nesting included)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise refused(f"{where}: not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise refused(f"{where}: not a JSON object")
    return value


def read_file(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`)."""
    with open_regular(path, limit) as (stream, _):
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise refused(f"{path}: more than the limit of {limit} bytes")
    return data


@dataclass
class Tree:
    """A directory's regular files and sub-directories (relative paths, parents first)."""

    root: Path
    dirs: list[PurePath] = field(default_factory=list)
    files: list[tuple[PurePath, int]] = field(default_factory=list)  # (path, size)


def walk(root: Path, limits: DatasetLimits, skip: Callable[[str], bool]) -> Tree:
    """Every entry under ``root``, checked: links and special files are refused wherever they
    are, as are trees deeper, larger or with more entries than the limits. Entries directly
    under ``root`` whose name ``skip`` accepts (a killed run's staging) are left out, unvisited."""
    tree, total, entries = Tree(root), 0, 0
    pending: list[tuple[PurePath, int]] = [(PurePath(), 0)]
    while pending:
        rel, depth = pending.pop()
        try:
            with os.scandir(root / rel) as listing:
                found = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            raise refused(f"{root / rel}: cannot list ({exc.strerror})") from None
        for entry in found:
            path, child = root / rel / entry.name, rel / entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise refused(f"{path}: {LINK_REFUSED}")
            if depth == 0 and skip(entry.name):
                continue
            entries += 1
            if entries > limits.max_entries:
                raise refused(f"{root}: more than {limits.max_entries} files and directories")
            if stat.S_ISDIR(st.st_mode):
                if depth + 1 >= limits.max_depth:
                    raise refused(f"{path}: more than {limits.max_depth} directory levels")
                tree.dirs.append(child)
                pending.append((child, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > limits.max_tree_bytes:
                    raise refused(f"{root}: more than {limits.max_tree_bytes} bytes of files")
                tree.files.append((child, st.st_size))
            else:
                raise refused(f"{path}: a {kind_of(st.st_mode)}, not a regular file")
    tree.dirs.sort(key=lambda p: len(p.parts))
    return tree


def copy_tree(tree: Tree, dest: Path) -> None:
    """Copy ``tree``'s directories and regular files (their bytes and permission bits, nothing
    else) into the existing directory ``dest``, each file checked again as it is opened."""
    for rel in tree.dirs:
        (dest / rel).mkdir()
    for rel, size in tree.files:
        with (
            open_regular(tree.root / rel, size) as (source, _),
            (dest / rel).open("xb") as target,
        ):
            shutil.copyfileobj(source, target, CHUNK)
            os.chmod(target.fileno(), stat.S_IMODE(os.fstat(source.fileno()).st_mode) & 0o777)


class Staging:
    """A new hidden directory in ``parent``, locked while this run lives; :meth:`commit` renames
    it into place (the lock goes with it), anything else removes it."""

    def __init__(self, parent: Path, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._committed = False

    def commit(self, target: Path) -> None:
        os.rename(self.path, target)  # fails if target appeared meanwhile: nothing is overwritten
        self._committed = True

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if not self._committed:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self._fd)


def is_locked(fd: int) -> bool:
    """Whether a live run holds ``fd``'s directory (see :class:`Staging`)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def remove_stale(parent: Path, prefix: str) -> list[str]:
    """Remove the directories named ``prefix*`` in ``parent`` that no live run holds: what a
    killed run left. Links and files of that name are left alone (never followed). Their names."""
    removed = []
    with contextlib.suppress(FileNotFoundError), os.scandir(parent) as listing:
        candidates = [e for e in listing if e.name.startswith(prefix)]
    for entry in candidates:
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone, or swapped for a link meanwhile
        try:
            if is_locked(fd):
                continue
            shutil.rmtree(entry.path)  # fd-based on Linux: links inside are removed, not followed
            removed.append(entry.name)
        except OSError as exc:
            raise refused(
                f"{entry.path}: a killed run's leftovers, not removable ({exc})"
            ) from None
        finally:
            os.close(fd)
    return removed
