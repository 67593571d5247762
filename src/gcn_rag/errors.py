"""The one error family of gcn-rag.

Every error carries the HTTP status and Databricks-style error code it maps to, so the CLI can
print ``Error: <message>`` and exit 1 while the server answers ``{"error_code", "message"}``.
Messages say what to do next. ``retry_after`` (seconds, or None) becomes the ``Retry-After``
header wherever the error is answered over HTTP.
"""

from __future__ import annotations


class GcnRagError(Exception):
    """Base class: a problem the user can act on (never a bug)."""

    status_code = 500
    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadInputError(GcnRagError):
    """The input (a file, an argument, a request) is malformed."""

    status_code = 400
    error_code = "INVALID_PARAMETER_VALUE"


class MethodNotAllowedError(GcnRagError):
    """An HTTP method a route does not take."""

    status_code = 405
    error_code = "METHOD_NOT_ALLOWED"


class NotFoundError(GcnRagError):
    """A named resource (table, archive, model, endpoint) does not exist."""

    status_code = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class SourceUnavailableError(GcnRagError):
    """A remote or packaged source could not be fetched."""

    status_code = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class AlreadyExistsError(GcnRagError):
    """A resource with that name exists already (or is mid-update)."""

    status_code = 409
    error_code = "RESOURCE_ALREADY_EXISTS"


class NotReadyError(GcnRagError):
    """The resource exists but cannot answer yet; retry shortly."""

    status_code = 503
    error_code = "TEMPORARILY_UNAVAILABLE"

    def __init__(self, message: str, retry_after: int | None = 1) -> None:
        super().__init__(message, retry_after)


class UnauthenticatedError(GcnRagError):
    """No bearer token, or an unknown one."""

    status_code = 401
    error_code = "UNAUTHENTICATED"


class PermissionDeniedError(GcnRagError):
    """The token's permission level is too low for the request."""

    status_code = 403
    error_code = "PERMISSION_DENIED"


class TooManyRequestsError(GcnRagError):
    """Every slot of a served entity is busy (or a rate limit is spent); retry later."""

    status_code = 429
    error_code = "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after: int | None = 1) -> None:
        super().__init__(message, retry_after)


class DeadlineExceededError(GcnRagError):
    """The model did not answer within the request timeout."""

    status_code = 504
    error_code = "DEADLINE_EXCEEDED"
