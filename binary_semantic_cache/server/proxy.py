"""The proxy's routes: chat completions through the cache, the rest forwarded unchanged."""

import asyncio
import dataclasses
import hmac
import json
import logging
import time

import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..llm import keys
from ..llm.answers import (HOLD, SEND, Accumulator, chunk_dicts, completion_dict,
                           completion_record)
from ..llm.policy import controls
from .embedders import AUTHORIZATION
from .sse import DONE, EventCutter, event
from .tenancy import tenant_of

log = logging.getLogger("binary_semantic_cache.server")

# Never passed on, either way: hop-by-hop headers, lengths and encodings that
# httpx and the ASGI server set themselves, and the proxy's own controls.
_REQUEST_DROP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
                 "trailer", "upgrade", "proxy-authorization", "proxy-connection",
                 "accept-encoding", "cache-control"}
_RESPONSE_DROP = {"content-length", "connection", "keep-alive", "transfer-encoding",
                  "content-encoding", "date", "server", "trailer", "upgrade"}


class BadRequest(Exception):
    """A request the proxy refuses itself, with its status."""

    def __init__(self, status, message, param=None):
        super().__init__(message)
        self.status, self.param = status, param


def error_response(status, message, kind="invalid_request_error", param=None, headers=None):
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": None}}, status_code=status, headers=headers)


class Proxy:
    """Everything a request needs: options, engine, upstream client, tenancy, metrics."""

    def __init__(self, options, engine, http, secret, admin_token, metrics):
        self.options, self.engine, self.http = options, engine, http
        self.secret, self.admin_token, self.metrics = secret, admin_token, metrics
        self.flushes = 0

    # ------------------------------------------------------------ forwarding

    def upstream_headers(self, request):
        return {k: v for k, v in request.headers.items()
                if k not in _REQUEST_DROP and not k.startswith("x-bsc-")}

    @staticmethod
    def passed_headers(response, extra=None):
        headers = {k: v for k, v in response.headers.items() if k not in _RESPONSE_DROP}
        headers.update(extra or {})
        return headers

    async def send(self, method, path, request, content):
        """The upstream's response (streamed), or raise BadRequest 502/504 with the cause."""
        url = self.options.upstream + path
        outgoing = self.http.build_request(method, url, content=content,
                                           headers=self.upstream_headers(request),
                                           params=request.query_params)
        try:
            return await self.http.send(outgoing, stream=True)
        except httpx.TimeoutException as err:
            log.warning("upstream timed out: %s %s: %r", method, url, err)
            raise BadRequest(504, f"the upstream did not answer within "
                                  f"{self.options.upstream_timeout:g} s") from None
        except httpx.HTTPError as err:
            log.warning("upstream unreachable: %s %s: %r", method, url, err)
            raise BadRequest(502, f"the upstream {self.options.upstream} could not be reached: "
                                  f"{type(err).__name__}") from None

    async def forward(self, request):
        """``GET /v1/models``, ``POST /v1/embeddings`` and the like, unchanged."""
        try:
            content = await self.body(request)
            upstream = await self.send(request.method, request.url.path[3:], request, content)
        except BadRequest as err:
            return error_response(err.status, str(err), "proxy_error")
        try:
            data = await upstream.aread()
        except httpx.HTTPError as err:
            log.warning("upstream failed mid-answer: %r", err)
            return error_response(502, "the upstream broke off its answer", "proxy_error")
        finally:
            await upstream.aclose()
        return Response(data, upstream.status_code, self.passed_headers(upstream))

    async def body(self, request):
        """The request body, or BadRequest 413 past ``max_body`` bytes."""
        limit = self.options.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, f"the request body has {int(declared):,} bytes, more than the "
                                  f"proxy's --max-body of {limit:,}")
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise BadRequest(413, f"the request body passed the proxy's --max-body of "
                                      f"{limit:,} bytes")
            parts.append(part)
        return b"".join(parts)

    # ------------------------------------------------------------ chat completions

    async def chat(self, request):
        started = time.perf_counter()
        try:
            payload, content, ctl = await self.read_chat(request)
        except BadRequest as err:
            self.metrics.outcome("error")
            log.info("refused a chat request (%d): %s", err.status, err)
            return error_response(err.status, str(err), param=err.param)
        token = AUTHORIZATION.set(request.headers.get("authorization"))
        try:
            return await self._chat(request, payload, content, ctl, started)
        except BadRequest as err:
            return error_response(err.status, str(err), "proxy_error")
        finally:
            AUTHORIZATION.reset(token)

    async def read_chat(self, request):
        content = await self.body(request)
        try:
            payload = json.loads(content)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(400, f"the body is not valid JSON: {err}") from None
        if not isinstance(payload, dict):
            raise BadRequest(400, f"expected a JSON object, got {type(payload).__name__}")
        if not isinstance(payload.get("model"), str):
            raise BadRequest(400, "expected 'model' as a string", "model")
        if not isinstance(payload.get("messages"), list) or not payload["messages"]:
            raise BadRequest(400, "expected 'messages' as a non-empty list", "messages")
        wanted = self.header_controls(request.headers)
        if "cache" in payload:
            body_controls = payload.pop("cache")
            if body_controls is not None and not isinstance(body_controls, dict):
                raise BadRequest(400, "expected 'cache' as an object such as "
                                      '{"no-store": true}', "cache")
            wanted.update(body_controls or {})
            content = json.dumps(payload).encode()
        try:
            ctl = controls(wanted or None, self.engine.policy)
        except (ValueError, TypeError) as err:
            raise BadRequest(400, str(err), "cache") from None
        if not self.options.shared_tenants:
            ctl = dataclasses.replace(ctl, tenant=tenant_of(self.secret,
                                                            request.headers.get("authorization")))
        return payload, content, ctl

    @staticmethod
    def header_controls(headers):
        wanted = {}
        for directive in headers.get("cache-control", "").lower().split(","):
            directive = directive.strip()
            if directive in ("no-cache", "no-store"):
                wanted[directive] = True
        if "x-bsc-namespace" in headers:
            wanted["namespace"] = headers["x-bsc-namespace"]
        if "x-bsc-ttl" in headers:
            try:
                wanted["ttl"] = float(headers["x-bsc-ttl"])
            except ValueError:
                raise BadRequest(400, f"expected X-BSC-TTL as seconds, got "
                                      f"{headers['x-bsc-ttl']!r}") from None
        return wanted

    async def _chat(self, request, payload, content, ctl, started):
        engine = self.engine
        params = {k: v for k, v in payload.items() if k != "messages"}
        plan = keys.chat_plan(params, payload["messages"], engine.policy.max_messages)
        label = "REFRESH" if ctl.no_cache else "MISS"

        async def bypass(reason):
            self.metrics.outcome("bypass")
            return await self.fetch(request, payload, content, None, "BYPASS", started)

        def replay(state):
            self.metrics.outcome("hit")
            self.metrics.hit_seconds(time.perf_counter() - started)
            return self.replay(state, payload)

        async def fetch(state):
            self.metrics.outcome(label.lower())
            return await self.fetch(request, payload, content, state, label, started)

        return await engine.aserve(plan, ctl, bool(payload.get("stream")), bypass=bypass,
                                   replay=replay, fetch=fetch)

    def replay(self, state, payload):
        info = self.engine.hit_info(state)
        headers = {"X-BSC-Cache": "HIT", "Age": str(int(info.age_seconds))}
        if info.tier == "semantic":
            headers["X-BSC-Similarity"] = f"{info.similarity:.4f}"
        if payload.get("stream"):
            shown = bool((payload.get("stream_options") or {}).get("include_usage"))
            body = b"".join(event(c) for c in chunk_dicts(state.record, shown)) + DONE
            return Response(body, 200, headers, media_type="text/event-stream")
        return Response(json.dumps(completion_dict(state.record)).encode(), 200, headers,
                        media_type="application/json")

    async def fetch(self, request, payload, content, state, label, started):
        """Go upstream; store the answer when ``state`` is given and the answer may be kept."""
        engine = self.engine
        if state is not None:
            engine.counters.miss()
        stream = bool(payload.get("stream"))
        shown = bool((payload.get("stream_options") or {}).get("include_usage"))
        sent = content
        if stream and state is not None and not shown and engine.usage_option:
            options = {**(payload.get("stream_options") or {}), "include_usage": True}
            sent = json.dumps({**payload, "stream_options": options}).encode()
        try:
            upstream = await self.send("POST", "/chat/completions", request, sent)
            if upstream.status_code == 400 and sent is not content:
                text = (await upstream.aread()).decode("utf-8", "replace")
                await upstream.aclose()
                if "stream_options" not in text:
                    return self.failed(upstream, text.encode(), state, label)
                log.info("upstream refused stream_options; streams will not ask for usage")
                engine.usage_option = False
                upstream = await self.send("POST", "/chat/completions", request, content)
        except BadRequest:
            if state is not None:
                engine.counters.skipped("error")
            raise
        if upstream.status_code != 200:
            try:
                data = await upstream.aread()
            except httpx.HTTPError:
                data = b""
            finally:
                await upstream.aclose()
            return self.failed(upstream, data, state, label)
        headers = self.passed_headers(upstream, {"X-BSC-Cache": label})
        if stream:
            relay = Relay(self, upstream, state, shown, started)
            return StreamingResponse(relay.events(), 200, headers,
                                     media_type="text/event-stream")
        try:
            data = await upstream.aread()
        except httpx.HTTPError as err:
            log.warning("upstream broke off its answer: %r", err)
            if state is not None:
                engine.counters.skipped("error")
            return error_response(502, "the upstream broke off its answer", "proxy_error")
        finally:
            await upstream.aclose()
        if state is not None:
            await self.store_plain(state, data, started)
        return Response(data, 200, headers)

    def failed(self, upstream, data, state, label):
        """An upstream error, passed through unchanged and never stored."""
        log.info("upstream answered %s", upstream.status_code)
        if state is not None:
            self.engine.counters.skipped("error")
        return Response(data, upstream.status_code, self.passed_headers(upstream,
                                                                        {"X-BSC-Cache": label}))

    async def store_plain(self, state, data, started):
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        record, reason = completion_record(body, time.perf_counter() - started,
                                           self.engine.policy.cache_tool_calls)
        await self.engine.arun(self.engine.store(state, record, reason))

    # ------------------------------------------------------------ the bsc routes

    async def flush(self, request):
        if self.admin_token is None:
            return error_response(403, "flushing is off: start bsc serve with "
                                       "--admin-token-file to allow it", "permission_error")
        given = request.headers.get("x-bsc-admin-token", "")
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            log.warning("flush refused: wrong or missing X-BSC-Admin-Token")
            return error_response(401, "flushing needs the admin token in X-BSC-Admin-Token",
                                  "authentication_error")
        try:
            content = await self.body(request)
            wanted = json.loads(content) if content.strip() else {}
        except BadRequest as err:
            return error_response(err.status, str(err))
        except ValueError:
            return error_response(400, "expected an empty body or {\"namespace\": \"...\"}")
        namespace = wanted.get("namespace") if isinstance(wanted, dict) else None
        if not isinstance(wanted, dict) or not isinstance(namespace, (str, type(None))):
            return error_response(400, "expected an empty body or {\"namespace\": \"...\"}",
                                  param="namespace")
        removed = await asyncio.to_thread(self.engine.clear, namespace)
        self.flushes += 1
        log.info("flushed %d entries (namespace %r)", removed, namespace)
        return JSONResponse({"removed": removed, "namespace": namespace})


class Relay:
    """A streamed miss: upstream events handed on as they come, the answer stored at [DONE]."""

    def __init__(self, proxy, upstream, state, shown, started):
        self.proxy, self.upstream, self.state = proxy, upstream, state
        self.shown, self.started = shown, started
        self.acc = Accumulator()
        self.errored = False  # the upstream sent an error event

    async def events(self):
        counters = self.proxy.engine.counters
        cutter, held, done, broken = EventCutter(), [], False, False
        try:
            async for data in self.upstream.aiter_raw():
                for raw, payload in cutter.feed(data):
                    if payload == b"[DONE]":
                        done = True
                        break
                    out = self.sort(raw, payload, held)
                    if out:
                        yield out
                if done:
                    break
        except httpx.HTTPError as err:
            log.warning("upstream stream broke off: %r", err)
            broken = True
        except BaseException:  # the client went away (cancelled): store nothing
            if self.state is not None:
                counters.skipped("incomplete_stream")
            raise
        finally:
            await self.upstream.aclose()
        if self.state is not None:
            if broken or self.errored:
                counters.skipped("stream_error")
            elif not done:
                counters.skipped("incomplete_stream")
            else:
                await self.store()
        for raw in held:
            yield raw
        if done:
            yield DONE

    def sort(self, raw, payload, held):
        """The bytes to hand on now (None to hold or drop them)."""
        try:
            chunk = json.loads(payload) if payload is not None else None
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            return raw
        if "error" in chunk:
            self.errored = True
            return raw
        step = self.acc.take(chunk, self.shown)
        if step == HOLD:
            held.append(raw)
        return raw if step == SEND else None

    async def store(self):
        engine = self.proxy.engine
        record, reason = self.acc.result(time.perf_counter() - self.started,
                                         engine.policy.cache_tool_calls)
        await engine.arun(engine.store(self.state, record, reason))
