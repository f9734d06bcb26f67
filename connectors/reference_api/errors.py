"""Errors raised by the reference API implementation."""

from __future__ import annotations

from streams.core.errors import PlatSyncError


class ApiError(PlatSyncError):
    """An API call was refused; nothing was written."""


class PayloadError(ApiError):
    """A payload does not have the documented shape.

    ``api`` is the API id, ``path`` the JSON path of the offending value (``$`` for the payload
    itself, e.g. ``documents[1].title``) and ``expected`` what should have been there.
    The message never contains payload values (a payload may hold a password).
    """

    def __init__(self, api: str, path: str, expected: str) -> None:
        self.api = api
        self.path = path
        self.expected = expected
        super().__init__(f"{api} payload: {path}: {expected}")

