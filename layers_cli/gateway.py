"""The request flow of `layers serve`, one function per step:

    authenticate → validate + resolve model → route → rate limit → quote + hold
    → provider (retries, fallbacks) → charge → settle + request row → response

A request is usually held in the daemon's memory, with no database work before the upstream
call (`holds`): a whole response against the balance, checked when its charge is written, a
stream against the daemon's reservation. A database movement a hold does need (a growth of the
reservation, a hold row for a budget) runs alongside the upstream call when it is certain to
be granted, and is confirmed before anything reaches the client.

Settlement happens on every exit path: success, provider failure (released, charged
nothing), and a client that disconnects mid-stream (charged for what was generated, marked
estimated). All database work runs on one dedicated thread so the event loop never blocks
on SQLite and writes never contend inside the process.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import keys, ledger, requestlog, validation
from .chatstream import ChatStream
from .db import now_iso
from .dbthread import DatabaseThread
from .errors import AuthenticationError, LayersError, ProviderError, ProviderRateLimited
from .holds import Holds
from .keycache import RememberedKeys
from .limits import LimitState, RateLimiter
from .openai_shape import completion_body, embedding_body, image_body
from .pricing import charge_micro, micro_to_credits, micro_to_usd, quote_micro
from .providers import get_adapter
from .providers.base import Chunk, Completion, Provider, UpstreamCall, Usage
from .providers.http import HTTPClient
from .routing import ProviderRoute, provider_routes
from .tokens import estimate_messages_tokens, estimate_text_tokens

if TYPE_CHECKING:
    from .catalog import ModelInfo
    from .keys import Principal
    from .service import Layers

T = TypeVar("T")


_ids = random.Random(secrets.randbits(128))

# _NO_CYCLE: a frame that raises an exception it holds in a local makes a reference cycle
# (exception → traceback → frame → exception). Only the garbage collector frees one, and with
# it every frame of the request, its body included; the daemon's collector runs rarely
# (`cli/serve.py`). Measured before this: 300 refused requests of 1 MB each took the daemon
# from 51 to 213 MB. So those locals are deleted as the exception leaves (as Python does for
# `except ... as name`).


def new_request_id() -> str:
    """``req_`` + the time in milliseconds (12 hex) + 48 random bits (12 hex).

    Time first, so the three indexes keyed by request id (requests, holds, ledger entries)
    grow at their end instead of at random pages (measured: 12% less database time per
    request). Ids are not secrets (every lookup also needs the key), so a PRNG seeded from
    the OS replaces a `secrets` syscall per request. The two 48-bit halves are written as one
    96-bit number's 24 hex digits: the same text as two ``:012x`` format specs, in 0.8
    instead of 1.1 µs."""
    stamp = (time.time_ns() // 1_000_000) << 48 | _ids.getrandbits(48)
    return "req_" + stamp.to_bytes(12, "big").hex()


@dataclass
class Ctx:
    """Everything known about one request as it moves through the flow."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    authorization: str | None = None
    principal: Principal | None = None
    key_from_memory: bool = False
    model: ModelInfo | None = None
    served_by: ModelInfo | None = None
    simulated: bool = False
    streamed: bool = False
    hold: ledger.Hold | None = None  # until the request is settled
    # the database movement the hold still depends on, running alongside the upstream
    # call (see `holds`): confirmed before any output
    pending_hold: asyncio.Future[Any] | None = None
    admitted_tokens: int = 0
    metadata: dict[str, Any] | None = None
    ttft_ms: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


class Gateway:
    def __init__(self, layers: Layers) -> None:
        self.layers = layers
        self.settings = layers.settings
        self.catalog = layers.catalog
        self.routes: dict[str, ProviderRoute] = provider_routes(self.settings)
        self.limiter = RateLimiter()
        self.http: HTTPClient | None = None
        self.retry_base_delay = 0.25
        self._db_thread: DatabaseThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by `start`
        self.known_keys = RememberedKeys()
        self._checked_in_step = False  # see `remembered`
        self.holds = Holds(self.submit, self.known_keys)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> list[ledger.Hold]:
        self.http = HTTPClient(timeout=self.settings.upstream_timeout, max_connections=200)
        self._loop = asyncio.get_running_loop()  # (asking for it again costs a syscall)
        self._db_thread = DatabaseThread(
            self.layers.db, before_batch=self._seen_elsewhere, loop=self._loop
        )
        recovered = await self.db(ledger.recover)
        await self.holds.open()
        return recovered

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self._db_thread is not None:
            try:
                await self.holds.close()
            finally:
                self._db_thread.stop()

    def _seen_elsewhere(self, db: Any) -> bool:
        """Another process committed (a key, a budget, the balance may have changed): what
        this daemon remembered of them is not to be relied on until it is read again.
        Returns True, so `try_now` tells a check made from a check skipped."""
        if self.known_keys.forget_if_changed(db):
            self.holds.seen_elsewhere()
        return True

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args)`` on the database thread."""
        return await self.submit(fn, *args, **kwargs)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queue ``fn(db, *args)`` on the database thread; resolves after the commit."""
        assert self._db_thread is not None, "Gateway.start() opens the database thread"
        return self._db_thread.submit(fn, self.layers.db, *args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a `Layers` service method on the database thread."""
        assert self._db_thread is not None, "Gateway.start() opens the database thread"
        return await self._db_thread.run(fn, *args, **kwargs)

    # -- steps ---------------------------------------------------------------------------
    def remembered(self, authorization: str | None) -> Principal | None:
        """The key behind the header as remembered, unless another process committed since
        it was read (checked here when the database thread is idle, else before its batch).

        One check serves every request of the same event-loop step: the step's end is
        queued as the check is made, so every request that arrives afterwards (in a later
        poll of the sockets) runs after it and checks again. What a client waited for
        before sending its request has been seen either way."""
        assert self._db_thread is not None, "Gateway.start() opens the database thread"
        if not self._checked_in_step and self._db_thread.try_now(self._seen_elsewhere):
            self._checked_in_step = True
            self._loop.call_soon(self._step_over)
        return self.known_keys.get(authorization)

    def _step_over(self) -> None:
        self._checked_in_step = False

    async def authenticate(self, authorization: str | None) -> Principal:
        """The key behind the header, from memory when nothing changed since it was read
        (see `keycache`)."""
        return self.remembered(authorization) or await self._verify(authorization)

    async def _verify(self, authorization: str | None) -> Principal:
        """Read the key from the database (401 when it is not a usable key); remember it."""
        principal = await self.db(keys.verify, authorization)
        self.known_keys.remember(authorization, principal)
        return principal

    def route(
        self, model: ModelInfo, principal: Principal
    ) -> tuple[Provider, ProviderRoute | None]:
        route = self.routes.get(model.provider)
        if principal.is_test or route is None or not route.live:
            return get_adapter("simulator"), None
        return get_adapter(route.adapter), route

    def candidates(self, model: ModelInfo) -> list[ModelInfo]:
        """The model, then its configured fallbacks (tried on retryable failures)."""
        chain = [model]
        for fallback_id in self.settings.fallbacks.get(model.id, []):
            chain.append(self.catalog.resolve(fallback_id))
        return chain

    def _upstream_call(
        self,
        model: ModelInfo,
        body: dict[str, Any],
        route: ProviderRoute | None,
        simulate: dict[str, str],
    ) -> UpstreamCall:
        return UpstreamCall(
            body={**body, "model": model.upstream_id},
            model=model,
            upstream_model=model.upstream_id,
            http=self.http,
            credential=route.credential if route else None,
            base_url=route.base_url if route else None,
            timeout=self.settings.upstream_timeout,
            simulate=simulate if route is None else {},
        )

    async def admit_and_hold(
        self, ctx: Ctx, chain: list[ModelInfo], prompt_tokens: int, max_out: int, images: int = 0
    ) -> None:
        """Rate limits, then a hold for the worst case over the model and its fallbacks."""
        principal = ctx.principal
        assert principal is not None
        ctx.admitted_tokens = prompt_tokens + max_out
        state = self.limiter.admit(
            principal.key_id, principal.rpm, principal.tpm, ctx.admitted_tokens
        )
        ctx.headers.update(state.headers())
        worst = max(
            quote_micro(m, prompt_tokens, max_out, self.layers.markup(m), images) for m in chain
        )
        ctx.hold, ctx.pending_hold, wait = self.holds.place(
            ctx.request_id, worst, principal, ctx.authorization, ctx.streamed
        )
        if wait:
            await self.confirm_hold(ctx)

    async def confirm_hold(self, ctx: Ctx) -> None:
        """Wait for the movement a hold depends on; raises its refusal."""
        pending, ctx.pending_hold = ctx.pending_hold, None
        if pending is None:
            return
        try:
            if pending.done():  # usually, by the time the upstream answered
                pending.result()
                return
            await asyncio.shield(pending)
        finally:
            del pending  # it holds the refusal raised here: see `_NO_CYCLE`

    async def with_retries(
        self,
        ctx: Ctx,
        chain: list[ModelInfo],
        body: dict[str, Any],
        simulate: dict[str, str],
        op: Callable[[Provider, UpstreamCall], Awaitable[T]],
    ) -> T:
        """Call the provider; retry retryable failures with backoff, then try fallbacks.

        Only ever called before any byte reached the client, so a retry is invisible.
        """
        assert ctx.principal is not None
        last: ProviderError | None = None
        for model in chain:
            adapter, route = self.route(model, ctx.principal)
            ctx.served_by, ctx.simulated = model, route is None
            call = self._upstream_call(model, body, route, simulate)
            for attempt in range(self.settings.max_retries + 1):
                try:
                    return await op(adapter, call)
                except ProviderError as exc:
                    last = exc
                    # The simulator fails on purpose and a provider's 429 asks the *client*
                    # to wait: neither is retried here, so the client's own retry logic
                    # (with Retry-After) is what gets exercised.
                    exc.client_retry = exc.retryable and (
                        route is None or isinstance(exc, ProviderRateLimited)
                    )
                    if exc.client_retry or not exc.retryable:
                        break
                    if attempt < self.settings.max_retries:
                        delay = self.retry_base_delay * (2**attempt)
                        if exc.retry_after is not None:
                            delay = min(max(delay, exc.retry_after), 10.0)
                        await asyncio.sleep(delay)
            if last is not None and not last.retryable:
                break
        assert last is not None
        try:
            raise last
        finally:
            del last  # see `_NO_CYCLE`

    def layers_object(
        self, ctx: Ctx, credits_micro: int, balance_micro: int, estimated: bool = False
    ) -> dict[str, Any]:
        served = ctx.served_by or ctx.model
        obj: dict[str, Any] = {
            "request_id": ctx.request_id,
            "credits_used": micro_to_credits(credits_micro),
            "cost_usd": micro_to_usd(credits_micro),
            "balance_remaining": micro_to_credits(balance_micro),
            "simulated": ctx.simulated,
            "latency_ms": ctx.elapsed_ms,
            "model": served.id if served else None,
            "provider": served.provider if served else None,
        }
        if ctx.ttft_ms is not None:
            obj["ttft_ms"] = ctx.ttft_ms
        if estimated:
            obj["estimated"] = True
        if served and ctx.model and served.id != ctx.model.id:
            obj["fallback_from"] = ctx.model.id
        return obj

    def _row(self, ctx: Ctx, **fields: Any) -> requestlog.RequestRow:
        served = ctx.served_by or ctx.model
        p = ctx.principal
        return requestlog.RequestRow(
            id=ctx.request_id,
            created_at=now_iso(),
            endpoint=ctx.endpoint,
            key_id=p.key_id if p else None,
            project_id=p.project_id if p else None,
            model=served.id if served else None,
            provider=("simulator:" if ctx.simulated else "") + served.provider if served else None,
            upstream_model=served.upstream_id if served else None,
            simulated=ctx.simulated,
            streamed=ctx.streamed,
            latency_ms=ctx.elapsed_ms,
            ttft_ms=ctx.ttft_ms,
            metadata=ctx.metadata,
            **fields,
        )

    async def settle(
        self, ctx: Ctx, usage: Usage, *, finish_reason: str | None, status: str = "ok"
    ) -> tuple[int, int]:
        """Charge the actual usage and write the request row, in one transaction.
        Returns (credits charged, balance after), in micro-credits."""
        await self.confirm_hold(ctx)
        served = ctx.served_by or ctx.model
        assert served is not None and ctx.hold is not None
        markup = self.layers.markup(served)
        base_micro, credits_micro = charge_micro(served, usage, markup)
        row = self._row(
            ctx,
            status=status,
            http_status=200,
            finish_reason=finish_reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            images=usage.images,
            estimated=usage.estimated,
            base_micro=base_micro,
            credits_micro=credits_micro,
            markup=str(markup),
        )
        if ctx.principal:
            self.limiter.adjust(ctx.principal.key_id, ctx.admitted_tokens, usage.total_tokens)
        hold, ctx.hold = ctx.hold, None
        return await self.holds.settle(
            hold, credits_micro, also=lambda conn: requestlog.insert(conn, row)
        )

    async def fail(self, ctx: Ctx, exc: LayersError, detail: str | None = None) -> None:
        """Record a failed request; release its hold (nothing is charged)."""
        exc.extra.setdefault("request_id", ctx.request_id)
        hold, ctx.hold = ctx.hold, None
        if ctx.pending_hold is not None:
            pending, ctx.pending_hold = ctx.pending_hold, None
            try:
                await pending
            except Exception:  # refused (or lost with its batch): a hold row never was
                if hold is not None and hold.backing == "row":
                    hold = None
            finally:
                del pending  # see `_NO_CYCLE`
        row = self._row(
            ctx,
            status="error",
            http_status=exc.status,
            error_code=exc.code,
            error=(detail or exc.message)[:2000],
        )
        try:
            await self.holds.settle(hold, None, also=lambda conn: requestlog.insert(conn, row))
        except Exception:  # the error the client sees matters more than its log row
            pass

    async def run(self, ctx: Ctx, flow: Awaitable[T]) -> T:
        """Run a flow; any failure is recorded, its hold released, and re-raised."""
        try:
            return await flow
        except asyncio.CancelledError:
            hold, ctx.hold = ctx.hold, None
            self.holds.abandon(hold)
            raise
        except LayersError as exc:
            refusal = await self._key_refusal_first(ctx, exc)
            await self.fail(ctx, refusal)
            try:
                if refusal is exc:
                    raise
                raise refusal from None
            finally:
                del refusal  # see `_NO_CYCLE`
        except Exception as exc:
            error = LayersError(
                f"Internal error in Layers ({exc.__class__.__name__}); request {ctx.request_id}"
                " was not charged.",
                hint="Run `layers requests show " + ctx.request_id + "` for details.",
            )
            await self.fail(ctx, error, detail=f"{exc.__class__.__name__}: {exc}")
            try:
                raise error from exc
            finally:
                del error  # see `_NO_CYCLE`

    async def _key_refusal_first(self, ctx: Ctx, exc: LayersError) -> LayersError:
        """A request admitted on a remembered key and then refused for another reason is
        told about its key first when the key was revoked meanwhile (what a fresh
        verification would have said)."""
        if not ctx.key_from_memory or isinstance(exc, AuthenticationError):
            return exc
        try:
            await self.db(keys.verify, ctx.authorization)
        except AuthenticationError as key_exc:
            return key_exc
        return exc

    async def prepare(
        self,
        ctx: Ctx,
        authorization: str | None,
        body: Any,
        check: Callable[[dict[str, Any], ModelInfo], T],
    ) -> tuple[dict[str, Any], T]:
        """Authenticate, validate and resolve the model (shared by every endpoint)."""
        body = validation.require_object(body)
        ctx.authorization = authorization
        ctx.principal = self.remembered(authorization)
        ctx.key_from_memory = ctx.principal is not None
        if ctx.principal is None:
            ctx.principal = await self._verify(authorization)
        model_id = validation.require_model(body)
        ctx.model = self.catalog.resolve(model_id)
        if ctx.model.lifecycle == "deprecated":
            ctx.headers["x-layers-deprecation"] = (
                f"{ctx.model.id} is deprecated; end of life {ctx.model.end_of_life}"
                + (f"; use {ctx.model.replacement}" if ctx.model.replacement else "")
            )
        if isinstance(body.get("metadata"), dict):
            ctx.metadata = body["metadata"]
        checked = check(body, ctx.model)
        return body, checked

    def simulate_directives(self, header: str | None) -> dict[str, str]:
        if not header:
            return {}
        from .providers.simulator import parse_simulate_header

        return parse_simulate_header(header)

    # -- endpoints -----------------------------------------------------------------------
    async def chat(
        self, authorization: str | None, body: Any, simulate: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        ctx = Ctx(new_request_id(), "chat")

        async def flow() -> tuple[dict[str, Any], dict[str, str]]:
            req, max_out = await self.prepare(ctx, authorization, body, validation.check_chat)
            directives = self.simulate_directives(simulate)
            chain = self.candidates(ctx.model)  # type: ignore[arg-type]
            prompt = estimate_messages_tokens(req["messages"], req.get("tools"))
            await self.admit_and_hold(ctx, chain, prompt, max_out)
            result: Completion = await self.with_retries(
                ctx, chain, req, directives, lambda a, c: a.complete(c)
            )
            charged, balance = await self.settle(
                ctx, result.usage, finish_reason=result.finish_reason
            )
            served = ctx.served_by or ctx.model
            body_out = _completion(
                ctx,
                served.id if served else "",
                result,  # type: ignore[union-attr]
                self.layers_object(ctx, charged, balance),
            )
            return body_out, self.response_headers(ctx, charged, balance)

        return await self.run(ctx, flow())

    def response_headers(
        self, ctx: Ctx, charged: int | None, balance: int | None
    ) -> dict[str, str]:
        headers = {"x-request-id": ctx.request_id, **ctx.headers}
        if charged is not None:
            headers["x-layers-credits-used"] = f"{micro_to_credits(charged):.6f}".rstrip("0")
        if balance is not None:
            headers["x-layers-balance"] = f"{micro_to_credits(balance):.6f}".rstrip("0")
        if ctx.simulated:
            headers["x-layers-simulated"] = "true"
        return headers

    async def chat_stream(
        self, authorization: str | None, body: Any, simulate: str | None = None
    ) -> ChatStream:
        """Everything up to the first chunk happens here, so failures before any output are
        plain HTTP errors (and retried/fallen back); the returned stream does the rest."""
        ctx = Ctx(new_request_id(), "chat", streamed=True)

        async def flow() -> ChatStream:
            req, max_out = await self.prepare(ctx, authorization, body, validation.check_chat)
            directives = self.simulate_directives(simulate)
            chain = self.candidates(ctx.model)  # type: ignore[arg-type]
            prompt = estimate_messages_tokens(req["messages"], req.get("tools"))
            await self.admit_and_hold(ctx, chain, prompt, max_out)

            async def open_stream(adapter: Provider, call: UpstreamCall) -> ChatStream:
                iterator = adapter.stream(call).__aiter__()
                try:
                    first = await iterator.__anext__()
                except StopAsyncIteration:
                    first = Chunk(finish_reason="stop")
                try:
                    await self.confirm_hold(ctx)  # before the first byte goes out
                except BaseException:
                    closer = getattr(iterator, "aclose", None)
                    if closer is not None:
                        await closer()
                    raise
                return ChatStream(self, ctx, iterator, first, prompt)

            return await self.with_retries(ctx, chain, req, directives, open_stream)

        return await self.run(ctx, flow())

    async def images(
        self, authorization: str | None, body: Any, simulate: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        ctx = Ctx(new_request_id(), "images")

        async def flow() -> tuple[dict[str, Any], dict[str, str]]:
            req, n = await self.prepare(ctx, authorization, body, validation.check_images)
            directives = self.simulate_directives(simulate)
            chain = self.candidates(ctx.model)  # type: ignore[arg-type]
            prompt = estimate_text_tokens(req["prompt"])
            await self.admit_and_hold(ctx, chain, prompt, 0, images=n)
            result = await self.with_retries(ctx, chain, req, directives, lambda a, c: a.images(c))
            charged, balance = await self.settle(ctx, result.usage, finish_reason=None)
            out = image_body(
                int(time.time()),
                result,
                self.layers_object(ctx, charged, balance),
            )
            return out, self.response_headers(ctx, charged, balance)

        return await self.run(ctx, flow())

    async def embeddings(
        self, authorization: str | None, body: Any, simulate: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        ctx = Ctx(new_request_id(), "embeddings")

        async def flow() -> tuple[dict[str, Any], dict[str, str]]:
            req, inputs = await self.prepare(ctx, authorization, body, validation.check_embeddings)
            directives = self.simulate_directives(simulate)
            chain = self.candidates(ctx.model)  # type: ignore[arg-type]
            prompt = sum(estimate_text_tokens(text) for text in inputs)
            await self.admit_and_hold(ctx, chain, prompt, 0)
            upstream_body = {**req, "input": inputs}
            result = await self.with_retries(
                ctx, chain, upstream_body, directives, lambda a, c: a.embed(c)
            )
            charged, balance = await self.settle(ctx, result.usage, finish_reason=None)
            served = ctx.served_by or ctx.model
            out = embedding_body(
                served.id,
                result.vectors,  # type: ignore[union-attr]
                req.get("encoding_format", "float"),
                result.usage,
                self.layers_object(ctx, charged, balance),
            )
            return out, self.response_headers(ctx, charged, balance)

        return await self.run(ctx, flow())

    def limit_headers(self, principal: Principal) -> LimitState:
        return self.limiter.peek(principal.key_id, principal.rpm)


def _completion(
    ctx: Ctx, model_id: str, result: Completion, layers: dict[str, Any]
) -> dict[str, Any]:
    return completion_body(
        "chatcmpl-" + ctx.request_id[4:], int(time.time()), model_id, result, layers
    )
