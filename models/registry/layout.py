"""Where a model's objects live in a store (the same keys in an S3 bucket and a local directory)::

<model>/versions/<version>/<file>...        the artifacts, uploaded first
<model>/versions/<version>/manifest.json    written last, create-only: it publishes the version
<model>/versions/<version>/.claim.json      a writer's lease on the version (claims.py)
<model>/aliases/<alias>.json                {"version", "previous", "updated_at"}
<model>/checkpoints/<run id>/<file>         training checkpoints, for resuming a run
"""

from __future__ import annotations

from dataclasses import dataclass

from models.contract import MANIFEST_NAME, SIGNATURE_NAME

CLAIM_NAME = ".claim.json"


@dataclass(frozen=True)
class Layout:
    """The keys of one (already validated) model name."""

    model: str

    @property
    def versions_prefix(self) -> str:
        return f"{self.model}/versions/"

    def version_prefix(self, version: str) -> str:
        return f"{self.versions_prefix}{version}/"

    def file_key(self, version: str, name: str) -> str:
        return f"{self.version_prefix(version)}{name}"

    def manifest_key(self, version: str) -> str:
        return self.file_key(version, MANIFEST_NAME)

    def signature_key(self, version: str) -> str:
        return self.file_key(version, SIGNATURE_NAME)

    def claim_key(self, version: str) -> str:
        return self.file_key(version, CLAIM_NAME)

    @property
    def aliases_prefix(self) -> str:
        return f"{self.model}/aliases/"

    def alias_key(self, alias: str) -> str:
        return f"{self.aliases_prefix}{alias}.json"

    def checkpoint_key(self, run_id: str, name: str) -> str:
        return f"{self.model}/checkpoints/{run_id}/{name}"

    def version_of(self, key: str) -> tuple[str, str]:
        """(version, name inside it) of a key under ``versions_prefix``."""
        version, _, name = key[len(self.versions_prefix) :].partition("/")
        return version, name

    def where(self, location: str, version: str | None = None) -> str:
        """How messages name the model (and version) and the store."""
        what = f"model {self.model}" + (f" version {version}" if version else "")
        return f"{what} in {location}"
