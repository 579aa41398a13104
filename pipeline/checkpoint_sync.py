"""Mirror a run's checkpoint to the registry's store, so a retried run resumes from there.

A training job on a GPU worker can die with its disk; the checkpoint it wrote after each epoch
lives on in ``<model>/checkpoints/<run id>/checkpoint.pt``. The next attempt with the same run id
downloads it and continues, so at most one epoch of work is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.contract import CHECKPOINT_NAME
from models.fileio import write_atomic
from models.registry.errors import BucketMissing
from models.registry.layout import Layout
from models.registry.names import check_version_id
from models.registry.store import ObjectStore

log = logging.getLogger("dcgan.checkpoint_sync")


@dataclass(frozen=True)
class CheckpointSync:
    store: ObjectStore
    model_name: str
    run_id: str

    def __post_init__(self) -> None:
        check_version_id(self.run_id)  # run ids follow the version-id rules: no '/', no '..'

    @property
    def key(self) -> str:
        return Layout(self.model_name).checkpoint_key(self.run_id, CHECKPOINT_NAME)

    def upload(self, path: Path) -> None:
        """Replace the remote checkpoint with ``path`` (one atomic object write)."""
        self.store.put_file(self.key, path)
        log.info("event=checkpoint_uploaded key=%s bytes=%d", self.key, path.stat().st_size)

    def download(self, dest: Path) -> bool:
        """Fetch the remote checkpoint into ``dest`` (atomically); False when there is none."""
        try:
            if self.store.stat(self.key) is None:
                return False
        except BucketMissing:  # nothing was ever written to this store: nothing to resume
            return False
        write_atomic(dest, b"".join(self.store.iter_chunks(self.key)))
        log.info("event=checkpoint_downloaded key=%s", self.key)
        return True

    def prepare_resume(self, out_dir: Path) -> Path | None:
        """The checkpoint to resume from: the local one if present, else the remote one."""
        local = out_dir / CHECKPOINT_NAME
        if local.is_file():
            return local
        return local if self.download(local) else None

    def uploader(self, out_dir: Path) -> Callable[[dict[str, Any]], None]:
        """An ``on_epoch`` callback for ``train()`` that uploads each new checkpoint."""
        return lambda _record: self.upload(out_dir / CHECKPOINT_NAME)
