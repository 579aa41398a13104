"""The journal of `dcgan balance --in-place`: how an ImageFolder is added to without ever being
half-changed, and why a journal found in a dataset is replayed only when this command wrote it.

Everything is staged in a hidden, locked directory (``.dcgan-balance-tmp-*``) ending with
``journal.json``: this dataset's identity (device and inode of its directory) and the sha256 of
every staged file. One rename makes it ``.dcgan-balance-pending``, the commit point; then each file
is moved into place (:func:`finish_pending`), the next run finishing what a killed one left.

A pending journal is replayed only when it names this very directory, holds nothing but the files
it lists, each with its recorded hash, and only the kinds of file this command writes (generated
PNGs in class folders, ``metadata.jsonl``, the card); every move goes through directory file
descriptors with ``O_NOFOLLOW``, so neither a link in the dataset nor one in the journal is ever
followed. Any other journal is refused with one line and nothing is changed: a dataset that ships
its own journal cannot make the command write anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from models.datasets.files import DatasetLimits, is_locked, lstat, refused, require_kind
from models.fileio import CHUNK, sha256_file

PENDING_NAME = ".dcgan-balance-pending"  # an in-place change, committed, being moved into place
STAGING_PREFIX = ".dcgan-balance-tmp-"  # an in-place change being staged (locked while it lives)
JOURNAL_NAME, JOURNAL_FORMAT = "journal.json", "dcgan-balance-journal/1"
METADATA_NAME, CARD_NAME = "metadata.jsonl", "README.md"
OWN_README_CARD_NAME = "BALANCE_CARD.md"  # the card, where the dataset has a README.md of its own
RECORDS = (METADATA_NAME, CARD_NAME, OWN_README_CARD_NAME)  # moved last
GENERATED = re.compile(r"[0-9]{1,6}/dcgan-[A-Za-z0-9._-]{1,100}-[0-9]{6,}\.png")
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def identity(root: Path) -> dict[str, int]:
    st = os.stat(root)
    return {"device": st.st_dev, "inode": st.st_ino}


def write_journal(staging: Path, root: Path) -> None:
    """Record what ``staging`` (this run's own, fresh directory) holds, for ``root``."""
    files = {}
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            rel = path.relative_to(staging).as_posix()
            if not (GENERATED.fullmatch(rel) or rel in RECORDS):
                raise AssertionError(f"{rel}: not a kind of file the journal replays")
            files[rel] = sha256_file(path)[0]
    journal = {"format": JOURNAL_FORMAT, "dataset": identity(root), "files": files}
    (staging / JOURNAL_NAME).write_text(json.dumps(journal, sort_keys=True))


@contextlib.contextmanager
def _directory(name: str | Path, where: Path, dir_fd: int | None = None) -> Iterator[int]:
    """A directory opened without following a link (relative to ``dir_fd`` when given)."""
    try:
        fd = os.open(name, DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refused(f"{where}: not a directory (a link or a file)") from None
        raise refused(f"{where}: cannot open ({exc.strerror})") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _load(fd: int, pending: Path, limits: DatasetLimits) -> dict[str, str]:
    """The journal's files (path -> sha256), refused unless it is one this command wrote."""
    where = pending / JOURNAL_NAME
    try:
        file = os.open(JOURNAL_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        raise refused(f"{where}: no readable journal ({exc.strerror}); {_DELETE}") from None
    with open(file, "rb") as stream:
        if not stat.S_ISREG(os.fstat(file).st_mode):
            raise refused(f"{where}: not a regular file; {_DELETE}")
        data = stream.read(limits.max_file_bytes + 1)
    try:
        journal = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise refused(f"{where}: not JSON ({exc}); {_DELETE}") from None
    files = journal.get("files") if isinstance(journal, dict) else None
    dataset = journal.get("dataset") if isinstance(journal, dict) else None
    if (
        not isinstance(journal, dict)
        or journal.get("format") != JOURNAL_FORMAT
        or not isinstance(files, dict)
        or not all(isinstance(h, str) and re.fullmatch("[0-9a-f]{64}", h) for h in files.values())
    ):
        raise refused(f"{where}: not a journal dcgan balance wrote; {_DELETE}")
    if dataset != identity(pending.parent):
        raise refused(f"{pending}: a journal written for another directory; {_DELETE}")
    for rel in files:
        if not (GENERATED.fullmatch(rel) or rel in RECORDS):
            raise refused(f"{pending}: the journal lists {rel!r}, not a file it writes; {_DELETE}")
    return files


_DELETE = "delete that directory to go on (nothing was changed)"


def _hash(name: str, dir_fd: int, limit: int) -> str | None:
    """sha256 of regular file ``name`` (no link followed); None when it is something else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    digest = hashlib.sha256()
    with open(fd, "rb") as stream:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _staged(fd: int, pending: Path, files: dict[str, str], limits: DatasetLimits) -> list[str]:
    """The journal's files still in ``pending``, each checked; anything else there is refused."""
    present = []
    for name in sorted(os.listdir(fd)):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if name == JOURNAL_NAME:
            continue
        if stat.S_ISDIR(st.st_mode) and re.fullmatch("[0-9]{1,6}", name):
            with _directory(name, pending / name, fd) as sub:
                present += [f"{name}/{file}" for file in sorted(os.listdir(sub))]
        else:
            present.append(name)
    for rel in present:
        if rel not in files:
            raise refused(f"{pending / rel}: not in the journal; {_DELETE}")
        folder, _, name = rel.rpartition("/")
        with _directory(folder or ".", pending / folder, fd) as sub:
            if _hash(name, sub, limits.max_file_bytes) != files[rel]:
                raise refused(f"{pending / rel}: not the file the journal recorded; {_DELETE}")
    return present


def _check_targets(root_fd: int, root: Path, present: list[str]) -> None:
    """Refuse before moving anything if a target is a link, or a generated file exists."""
    for rel in present:
        folder = rel.rpartition("/")[0]
        where = root / rel
        try:
            st = os.stat(rel, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        except OSError as exc:  # ELOOP/ENOTDIR: the class folder is a link or a file
            raise refused(f"{root / folder}: cannot be added to ({exc.strerror})") from None
        if folder:
            folder_st = lstat(root / folder)
            if folder_st is not None:
                require_kind(root / folder, folder_st, stat.S_ISDIR, "directory")
            if st is not None:
                raise refused(f"{where}: exists; the journal would replace it ({_DELETE})")
        elif st is not None:
            require_kind(where, st, stat.S_ISREG, "regular file")


def finish_pending(root: Path, limits: DatasetLimits | None = None) -> bool:
    """Move a committed in-place change's files into ``root``, after checking it is one this
    command wrote for ``root`` (refused otherwise, nothing changed); False when there was none."""
    limits = limits or DatasetLimits()
    pending = root / PENDING_NAME
    st = lstat(pending)
    if st is None:
        return False
    require_kind(pending, st, stat.S_ISDIR, "directory")
    with _directory(root, root) as root_fd, _directory(PENDING_NAME, pending, root_fd) as fd:
        if is_locked(fd):
            raise refused(f"{pending}: another dcgan balance is adding to this dataset now")
        if os.listdir(fd):
            files = _load(fd, pending, limits)
            present = _staged(fd, pending, files, limits)
            _check_targets(root_fd, root, present)
            _move(root_fd, fd, root, sorted(present, key=lambda rel: rel in RECORDS))
        for name in os.listdir(fd):  # what is left: emptied class folders, then the journal
            if name != JOURNAL_NAME:
                os.rmdir(name, dir_fd=fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(JOURNAL_NAME, dir_fd=fd)
        os.rmdir(PENDING_NAME, dir_fd=root_fd)
    return True


def _move(root_fd: int, pending_fd: int, root: Path, present: list[str]) -> None:
    for rel in present:
        folder, _, name = rel.rpartition("/")
        if folder:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, dir_fd=root_fd)
        with (
            _directory(folder or ".", root / folder, root_fd) as target,
            _directory(folder or ".", root / PENDING_NAME / folder, pending_fd) as source,
        ):
            os.replace(name, name, src_dir_fd=source, dst_dir_fd=target)


def require_no_pending(root: Path) -> None:
    """Refuse a dataset holding an unfinished in-place change (it is never copied)."""
    if lstat(root / PENDING_NAME) is not None:
        raise refused(
            f"{root / PENDING_NAME}: an unfinished in-place balance; finish it with "
            "`dcgan balance --in-place` (or delete it) first"
        )
