"""Errors a user can act on. The CLI turns each into one line on stderr and exit code 2.

models.errors.UserFacingError   also the base of the registry's errors
└── UserError             something the user can fix; the message says what and how
    ├── DataError             a dataset file is missing, corrupt, truncated or wrong
    ├── DataSourceError       a source (directory, S3 prefix, mirror) cannot deliver the files
    ├── CheckpointError       a checkpoint is missing, unreadable or does not fit the run
    └── TrainingDiverged      a loss turned NaN/inf; the last good checkpoint is kept
"""

from models.errors import UserFacingError


class UserError(UserFacingError):
    """Base class: the message is shown to the user as is."""


class DataError(UserError):
    pass


class DataSourceError(UserError):
    pass


class CheckpointError(UserError):
    pass


class TrainingDiverged(UserError):
    pass
