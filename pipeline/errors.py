"""The pipeline's errors (see models/errors.py for the whole tree). The CLI turns each into one
line on stderr and exit code 2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from models.errors import UserFacingError

if TYPE_CHECKING:
    from pipeline.export import ParityCheck


class UserError(UserFacingError):
    """Base class: the message is shown to the user as is."""


class DataError(UserError):
    """A dataset file is missing, corrupt, truncated or wrong."""


class DataSourceError(UserError):
    """A source (directory, S3 prefix, mirror) cannot deliver the files."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or does not fit the run."""


class DatasetMismatch(UserError):
    """A run would be published under a model whose versions are of another dataset."""


class TrainingDiverged(UserError):
    """A loss turned NaN/inf; the last good checkpoint is kept."""


class ExportError(UserError):
    """An artifact failed a check; nothing was written to the destination."""

    def __init__(self, message: str, parity: Sequence[ParityCheck] = ()) -> None:
        super().__init__(message)
        self.parity = list(parity)


class RetrainError(UserError):
    """A retraining run through Prefect could not be started or did not complete."""
