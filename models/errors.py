"""The root of every error a user can act on, and the whole tree drawn in one place.

``UserFacingError`` lives in models/ (torch-free, imported by everything), so one
``except UserFacingError`` in the CLI (``pipeline/cli.py:main``: one line, exit code 2) or in an
HTTP handler (``serving/api/http_errors.py``: ``{"detail": ...}`` with the status its type maps
to) covers them all::

    UserFacingError                           models/errors.py
    ├── RegistryError                         models/registry/errors.py (drawn in full there)
    │   ├── InvalidName, StoreError (StoreUnreachable, NotAnS3Server, BadCredentials,
    │   │   BucketMissing), ObjectNotFound, PreconditionFailed, VersionExists,
    │   │   PublishInProgress, VersionNotFound, AliasNotFound, IntegrityError, CacheError,
    │   │   VersionInUse, ConcurrentUpdate, SignatureError
    ├── UserError                             pipeline/errors.py
    │   ├── DataError                         a dataset file is missing, corrupt or wrong
    │   ├── DataSourceError                   a source cannot deliver the files
    │   ├── CheckpointError                   a checkpoint is missing or does not fit the run
    │   ├── TrainingDiverged                  a loss turned NaN/inf
    │   ├── ExportError                       an artifact failed its checks (nothing written)
    │   └── RetrainError                      a Prefect retraining run failed to start or finish
    ├── RequestError                          serving/core/errors.py: a request to change (4xx;
    │   │                                     its HTTP status: serving/http_status.py)
    │   ├── InvalidRequest (NoCandidate), MalformedRequest, UnsupportedMediaType, TooLarge,
    │   │   BodyTimeout, UnknownModel, UnsupportedByVersion, NotAuthenticated, AdminDisabled
    ├── NotReady                              no model yet, or the queue is full (503 + Retry-After)
    ├── ModelLoadError                        a version failed to load or warm up (refused)
    ├── ServiceError                          the client: the service refused or is unreachable
    ├── ArchiveError                          a TorchServe archive could not be built
    ├── HandlerConfigError                    the TorchServe worker's files or settings are unusable
    └── DatasetError                          models/errors.py: a user's dataset unreadable or
                                              unwritable (`dcgan balance`, `dcgan train --data`)

Not user-facing, never shown: ``serving.core.errors.ClientGone`` (the client hung up; its work is
dropped).
"""

from __future__ import annotations


class UserFacingError(Exception):
    """Something the user can fix; ``str(exc)`` is the one-line message to show."""


class DatasetError(UserFacingError):
    """A user's dataset (`dcgan train --data`, `dcgan balance`) cannot be read or written as
    asked; nothing changed."""
