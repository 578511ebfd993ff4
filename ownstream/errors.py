"""The one vocabulary of typed domain errors.

Each error carries its PDPP error code and HTTP status so the CLI and the HTTP layer report the
same thing; the HTTP layer turns them into the PDPP envelope in one place (`api/errors.py`).
"""

from __future__ import annotations

from typing import Any


class OwnstreamError(Exception):
    """Base of every error ownstream reports to an owner or a client."""

    code = "api_error"
    status = 500

    def __init__(self, message: str, *, param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param is not None:
            body["param"] = self.param
        body.update(self.extra)
        return body


# 400 — the request or the input is wrong
class InvalidRequest(OwnstreamError):
    """A malformed request."""

    code = "invalid_request"
    status = 400


class InvalidArgument(OwnstreamError):
    """A parameter has a bad value."""

    code = "invalid_argument"
    status = 400


class InvalidCursor(OwnstreamError):
    """A cursor that is not ours or is stale."""

    code = "invalid_cursor"
    status = 400


class UnknownField(OwnstreamError):
    """A field the stream does not declare."""

    code = "unknown_field"
    status = 400


class UnsupportedVersion(OwnstreamError):
    """The request asked for a PDPP-Version this server does not speak."""

    code = "unsupported_version"
    status = 400


class InvalidWindow(OwnstreamError):
    """A field-window selector that is malformed or combines exclusive parameters."""

    code = "invalid_window"
    status = 400


class InvalidManifest(OwnstreamError):
    """A connector manifest failed validation."""

    code = "invalid_manifest"
    status = 400


class InvalidDefinition(OwnstreamError):
    """A stream definition failed validation."""

    code = "invalid_stream_definition"
    status = 400


class IncompatibleDefinition(OwnstreamError):
    """A connector claims a shared stream definition but differs from it."""

    code = "incompatible_stream_definition"
    status = 400


class InvalidRule(OwnstreamError):
    """An identity rule failed validation."""

    code = "invalid_identity_rule"
    status = 400


class InvalidArtifact(OwnstreamError):
    """An archive or file that cannot be imported safely."""

    code = "invalid_artifact"
    status = 400


class UploadTooLarge(OwnstreamError):
    """An uploaded archive is larger than the server accepts (`OWNSTREAM_MAX_UPLOAD_BYTES`)."""

    code = "upload_too_large"
    status = 413


class BlobTooLarge(OwnstreamError):
    """Content larger than the server stores as one blob (`OWNSTREAM_MAX_BLOB_BYTES`)."""

    code = "blob_too_large"
    status = 413


class BlobTooLargeToReturn(OwnstreamError):
    """A blob larger than one MCP tool result carries (`fetch_blob`'s bound)."""

    code = "blob_too_large_to_return"
    status = 413


class InvalidExpand(OwnstreamError):
    """An `expand[]` names a relation the stream does not declare as expandable."""

    code = "invalid_expand"
    status = 400


class ProtocolViolation(OwnstreamError):
    """A connector broke the run protocol."""

    code = "protocol_violation"
    status = 400


class ProviderAuthorizationRefused(OwnstreamError):
    """An OAuth authorization at a provider did not complete: an unknown, used or expired
    state, a refused code (PKCE mismatch), or the owner declined at the provider."""

    code = "provider_authorization_refused"
    status = 400


# 401 / 403 — who is asking and what they may see
class AuthenticationError(OwnstreamError):
    """No valid bearer token."""

    code = "authentication_error"
    status = 401


class GrantExpired(OwnstreamError):
    """The grant has expired."""

    code = "grant_expired"
    status = 403


class GrantRevoked(OwnstreamError):
    """The grant was revoked."""

    code = "grant_revoked"
    status = 403


class GrantStreamNotAllowed(OwnstreamError):
    """The grant does not cover that stream."""

    code = "grant_stream_not_allowed"
    status = 403


class FieldNotGranted(OwnstreamError):
    """The request names a field outside the grant's projection."""

    code = "field_not_granted"
    status = 403


class InsufficientScope(OwnstreamError):
    """The token may not perform this operation."""

    code = "insufficient_scope"
    status = 403


# 404 / 409 / 410 — what exists, what conflicts, what is gone
class NotFound(OwnstreamError):
    """No such thing."""

    code = "not_found"
    status = 404


class BlobNotFound(OwnstreamError):
    """No such blob, or none this bearer can reach through a record it may read."""

    code = "blob_not_found"
    status = 404


class ConnectionNotFound(OwnstreamError):
    """No such connection (or not visible to you)."""

    code = "connection_not_found"
    status = 404


class FieldNotFound(OwnstreamError):
    """The record has no value for that field."""

    code = "field_not_found"
    status = 404


class QueryNotFound(OwnstreamError):
    """The text asked for does not occur in the field."""

    code = "query_not_found"
    status = 404


class UnknownStream(OwnstreamError):
    """No such stream definition."""

    code = "unknown_stream"
    status = 404


class UnknownConnector(OwnstreamError):
    """No such connector."""

    code = "unknown_connector"
    status = 404


class AmbiguousConnection(OwnstreamError):
    """Several connections match; name one with connection_id."""

    code = "ambiguous_connection"
    status = 409


class IdentityUnproven(OwnstreamError):
    """Nothing proves that this source is the account of the target connection."""

    code = "identity_unproven"
    status = 409


class IdentityMismatch(OwnstreamError):
    """The source proved an identity different from the target connection's."""

    code = "identity_mismatch"
    status = 409


class ConnectionTombstoned(OwnstreamError):
    """That identity's connection was deleted; the owner must re-create it explicitly."""

    code = "connection_tombstoned"
    status = 409


class ConnectionNotWritable(OwnstreamError):
    """The connection is revoked."""

    code = "connection_not_writable"
    status = 409


class ConnectionRunActive(OwnstreamError):
    """A run of this connection is in progress."""

    code = "connection_run_active"
    status = 409


class ArtifactAlreadyImported(OwnstreamError):
    """The same bytes were imported into another connection."""

    code = "artifact_already_imported"
    status = 409


class RunLeaseLost(OwnstreamError):
    """The run's lease expired and was taken over (or its connection deleted); it may not write."""

    code = "run_lease_lost"
    status = 409


class ConnectionInactive(OwnstreamError):
    """The connection is already revoked."""

    code = "connection_inactive"
    status = 409


class ConnectorNotRunnable(OwnstreamError):
    """That acquisition path cannot run here."""

    code = "connector_not_runnable"
    status = 409


class ProviderAuthorizationPending(OwnstreamError):
    """The provider has not redirected back yet (the owner did not finish in time)."""

    code = "provider_authorization_pending"
    status = 409


class ScheduleNotAllowed(OwnstreamError):
    """The connection's paths may not run on a schedule (or the interval is out of range)."""

    code = "schedule_not_allowed"
    status = 409


class AuthorizationNotPending(OwnstreamError):
    """The authorization request was already decided, or it expired."""

    code = "authorization_not_pending"
    status = 409


class CursorExpired(OwnstreamError):
    """The change token is too old; re-sync."""

    code = "cursor_expired"
    status = 410


# 422 — the request is well formed but cannot apply to what it names
class FieldNotText(OwnstreamError):
    """A field window was asked of a field that does not hold text."""

    code = "field_not_text"
    status = 422


class RangeNotSatisfiable(OwnstreamError):
    """A byte range that lies outside the blob."""

    code = "range_not_satisfiable"
    status = 416


# 5xx-ish — a run that could not go on
class CredentialUnavailable(OwnstreamError):
    """The connection needs a credential it does not have."""

    code = "credential_unavailable"
    status = 409


class InternalError(OwnstreamError):
    """Something went wrong inside ownstream; the log has the details."""

    code = "internal_error"
    status = 500


class RunFailed(OwnstreamError):
    """The connector run failed."""

    code = "run_failed"
    status = 502
