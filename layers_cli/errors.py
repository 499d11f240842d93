"""One error tree for the whole of Layers, rendered twice.

The server renders a `LayersError` as an OpenAI-shaped body
``{"error": {"message", "type", "code", "param", ...extras}}`` with ``status``; the CLI
renders ``message`` (and ``hint``) on stderr and exits with ``exit_code``. Clients show
only ``error.message``, so every message must say what happened *and* what to do.

    LayersError
    ├── ConfigError                     bad config.toml / data home            (exit 2)
    ├── DatabaseError                   corrupt or too-new database             (exit 3)
    ├── InvalidRequest (400)            malformed body, bad flag value
    │   └── CapabilityError (400)       the model cannot do what was asked
    ├── NotFound (404)                  project, key, request
    │   └── ModelNotFound (404)         with closest ids and supported_models
    ├── ModelRetired (410)
    ├── AuthenticationError (401)       missing / unknown / revoked / expired key
    ├── PaymentRequired (402)
    │   ├── InsufficientCredits (402)   with balance and required
    │   └── BudgetExceeded (402)        key or project budget
    ├── Conflict (409)                  duplicate name, rotating a revoked key
    ├── RateLimited (429)               with retry_after
    ├── SecretsError                    keyring problems
    └── ProviderError (502)             anything the upstream did
        ├── ProviderBadRequest (400)
        ├── ProviderAuthError (502)
        ├── ProviderServerError (502)
        ├── ProviderRateLimited (429)
        ├── ProviderUnavailable (503)
        └── ProviderTimeout (504)

Outside the tree, `TransportTimeout` and `TransportError` are what the upstream HTTP client
raises; `providers.base` turns them into `ProviderTimeout` / `ProviderServerError`.
"""

from __future__ import annotations

from typing import Any


class LayersError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"
    exit_code: int = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = extra

    def to_body(self, request_id: str | None = None) -> dict[str, Any]:
        """The OpenAI-shaped error body; Layers extras live inside ``error``."""
        message = self.message if not self.hint else f"{self.message} {self.hint}"
        error: dict[str, Any] = {
            "message": message,
            "type": self.type,
            "code": self.code,
            "param": self.param,
        }
        error.update(self.extra)
        if request_id:
            error["request_id"] = request_id
        return {"error": error}


class ConfigError(LayersError):
    status = 500
    type = "server_error"
    code = "config_error"
    exit_code = 2


class DatabaseError(LayersError):
    status = 500
    type = "server_error"
    code = "database_error"
    exit_code = 3


class InvalidRequest(LayersError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
    exit_code = 2


class CapabilityError(InvalidRequest):
    code = "unsupported_capability"


class NotFound(LayersError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"
    exit_code = 4


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelRetired(LayersError):
    status = 410
    type = "invalid_request_error"
    code = "model_retired"
    exit_code = 4


class AuthenticationError(LayersError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    exit_code = 5


class PaymentRequired(LayersError):
    status = 402
    type = "insufficient_quota"
    code = "payment_required"
    exit_code = 6


class InsufficientCredits(PaymentRequired):
    code = "insufficient_credits"


class BudgetExceeded(PaymentRequired):
    code = "budget_exceeded"


class Conflict(LayersError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"
    exit_code = 7


class RateLimited(LayersError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    exit_code = 8


class SecretsError(LayersError):
    status = 500
    type = "server_error"
    code = "secrets_error"
    exit_code = 9


class ProviderError(LayersError):
    """Something the upstream provider did. ``provider`` always names it."""

    status = 502
    type = "upstream_error"
    code = "provider_error"
    exit_code = 10
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, provider=provider, **kw)
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        # whether a client should try again (set by the gateway, which retries the rest)
        self.client_retry: bool | None = None
        if retryable is not None:
            self.retryable = retryable
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(0, round(retry_after))))


class ProviderBadRequest(ProviderError):
    status = 400
    type = "invalid_request_error"
    code = "provider_bad_request"


class ProviderAuthError(ProviderError):
    status = 502
    code = "provider_auth_error"


class ProviderServerError(ProviderError):
    """The upstream answered 5xx or broke the connection: worth another try."""

    status = 502
    code = "provider_server_error"
    retryable = True


class ProviderRateLimited(ProviderError):
    status = 429
    type = "rate_limit_error"
    code = "provider_rate_limited"
    retryable = True


class ProviderUnavailable(ProviderError):
    status = 503
    code = "provider_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    status = 504
    code = "provider_timeout"
    retryable = True


class TransportTimeout(Exception):
    """The upstream did not connect or answer within the timeout."""


class TransportError(Exception):
    """The connection failed or broke (refused, reset, malformed HTTP, dropped mid-body)."""
