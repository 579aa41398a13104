"""The root of every error a user can act on, shared by models/, pipeline/ and serving/.

It lives in models/ (torch-free, imported by everything) so that one ``except UserFacingError``
in a CLI or an HTTP handler covers data, training, registry and serving errors alike.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """Something the user can fix; ``str(exc)`` is the one-line message to show."""
