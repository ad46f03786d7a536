"""The ingress: one HTTP listener (and one gRPC listener) in front of every local service.

Requests are routed by Host (`{name}-{namespace}.{domain}`) or by path
(`/serving/{namespace}/{name}/...`), split between revisions by the traffic targets, held while
a revision cold-starts (the activator), and proxied to the least-loaded ready replica over pooled
keep-alive connections. The response carries `x-wharf-revision`, naming the revision that
served it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import grpc
import orjson

from wharf_local.routing import Target, route
from wharf_local.runtime import ActivationTimeout, Component, LocalRuntime, Service
from wharf_local.upstream import Response, UpstreamConnectError, UpstreamPool

log = logging.getLogger("wharf.ingress")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REVISION_HEADER = b"x-wharf-revision"
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
    }
)
GRPC_ROUTE_KEYS = ("host", "x-wharf-host")


def _resolve(
    runtime: LocalRuntime, host: str | None, path: str
) -> tuple[Service, Component, str] | str:
    """The service, component and upstream path, or the reason there is none."""
    target = route(host, path, runtime.hosts)
    if target is None:
        return (
            f"no InferenceService for host {host!r} or path {path!r}: use Host "
            f"{{name}}-{{namespace}}.{runtime.settings.domain} or the path "
            "/serving/{namespace}/{name}/..."
        )
    return _resolve_target(runtime, target)


def _resolve_target(runtime: LocalRuntime, target: Target) -> tuple[Service, Component, str] | str:
    svc = runtime.services.get((target.namespace, target.name))
    if svc is None:
        return f"InferenceService {target.namespace}/{target.name} not found"
    name = target.component or svc.plan.entry.component
    comp = svc.components.get(name)
    if comp is None:
        return f"InferenceService {target.namespace}/{target.name} has no {name}"
    return svc, comp, target.path


class HttpIngress:
    """A lean ASGI reverse proxy (no framework: every microsecond here is on each request)."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.upstream = UpstreamPool()
        runtime.on_replica_exit.append(self.upstream.forget)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host: str | None = None
        headers: list[tuple[bytes, bytes]] = []
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
            if key not in _HOP_BY_HOP:
                headers.append((key, value))
        resolved = _resolve(self.runtime, host, scope["path"])
        if isinstance(resolved, str):
            await _json(send, 404, {"error": resolved})
            return
        svc, comp, path = resolved
        body = await _read_body(receive)
        url = _upstream_target(scope, path)
        for attempt in range(3):
            try:
                rev, replica = await self.runtime.acquire(svc, comp)
            except ActivationTimeout as exc:
                await _json(send, 503, {"error": str(exc)})
                return
            try:
                try:
                    resp = await self.upstream.request(
                        replica.http_port, scope["method"], url, headers, body
                    )
                except UpstreamConnectError:
                    # the replica went away before the request was sent: try another
                    self.runtime.mark_unreachable(rev, replica)
                    if attempt == 2:
                        await _json(send, 502, {"error": f"{rev.name}: no replica answered"})
                        return
                    continue
                except (OSError, ValueError) as exc:
                    await _json(send, 502, {"error": f"{rev.name}: {exc}"})
                    return
                await _respond(send, resp, rev.name.encode())
                return
            finally:
                self.runtime.release(rev, replica)


async def _respond(send: Send, resp: Response, revision: bytes) -> None:
    out = [(k, v) for k, v in resp.headers if k.lower() not in _HOP_BY_HOP]
    out.append((REVISION_HEADER, revision))
    if resp.stream is None:
        out.append((b"content-length", b"%d" % len(resp.body)))
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        await send({"type": "http.response.body", "body": bytes(resp.body)})
        return
    # a body without a length (SSE, token streams): passed on chunk by chunk
    await send({"type": "http.response.start", "status": resp.status, "headers": out})
    async for chunk in resp.stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _upstream_target(scope: Scope, path: str) -> str:
    """The request target for the replica: the client's raw path unless a prefix was cut."""
    raw_path = scope.get("raw_path")
    url = raw_path.decode("latin-1") if raw_path and scope["path"] == path else path
    query = scope.get("query_string")
    return url + "?" + query.decode("latin-1") if query else url


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GrpcIngress(grpc.GenericRpcHandler):
    """A byte-level gRPC proxy: every method, every streaming kind.

    It serves either one service (`fixed`: the connection's `:authority` named it, see
    `sniffing`) or any, named by a `host` (or `x-wharf-host`) metadata entry, which wins when
    both are there.
    """

    def __init__(self, runtime: LocalRuntime, fixed: Target | None = None) -> None:
        self.runtime = runtime
        self.fixed = fixed
        self._channels: dict[int, grpc.aio.Channel] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        method: str = handler_call_details.method

        async def handle(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            async for item in self._proxy(method, requests, context):
                yield item

        return grpc.stream_stream_rpc_method_handler(handle)

    def _channel(self, port: int) -> grpc.aio.Channel:
        channel = self._channels.get(port)
        if channel is None:
            channel = self._channels[port] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return channel

    async def _proxy(
        self,
        method: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> AsyncIterator[bytes]:
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
        found = dict(metadata)
        host = next((found[k] for k in GRPC_ROUTE_KEYS if k in found), None)
        if host is None and self.fixed is not None:
            resolved = _resolve_target(self.runtime, self.fixed)
        elif host is None:
            resolved = (
                "no InferenceService named: set the channel's authority "
                "(grpc.default_authority) or a `host` metadata entry to "
                f"{{name}}-{{namespace}}.{self.runtime.settings.domain}"
            )
        else:
            resolved = _resolve(self.runtime, host, "")
        if isinstance(resolved, str):
            await context.abort(grpc.StatusCode.NOT_FOUND, resolved)
            return
        svc, comp, _ = resolved
        try:
            rev, replica = await self.runtime.acquire(svc, comp)
        except ActivationTimeout as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        try:
            if replica.grpc_port is None:
                await context.abort(
                    grpc.StatusCode.UNIMPLEMENTED, f"{rev.name} serves no gRPC port"
                )
                return
            forward = [(k, v) for k, v in metadata if k not in GRPC_ROUTE_KEYS]
            call: grpc.aio.StreamStreamCall[bytes, bytes] = self._channel(
                replica.grpc_port
            ).stream_stream(method)(requests, metadata=forward)  # type: ignore[arg-type]
            await context.send_initial_metadata((("x-wharf-revision", rev.name),))
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
        finally:
            self.runtime.release(rev, replica)

    async def aclose(self) -> None:
        for channel in self._channels.values():
            await channel.close()


class GrpcRouter:
    """The gRPC proxies behind the ingress ports, on loopback: one routed by metadata, and one
    per service authority seen so far (created on first use)."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self._servers: dict[Target | None, tuple[grpc.aio.Server, GrpcIngress, int]] = {}
        self._lock = asyncio.Lock()

    async def port_for(self, authority: str | None) -> tuple[str, int]:
        target = route(authority, "", self.runtime.hosts) if authority else None
        if target is not None:
            target = Target(target.namespace, target.name, target.component, "")
        async with self._lock:
            entry = self._servers.get(target)
            if entry is None:
                proxy = GrpcIngress(self.runtime, target)
                server = grpc.aio.server(handlers=[proxy])
                port = server.add_insecure_port("127.0.0.1:0")
                await server.start()
                entry = self._servers[target] = (server, proxy, port)
        return "127.0.0.1", entry[2]

    async def aclose(self) -> None:
        for server, proxy, _ in self._servers.values():
            await server.stop(1.0)
            await proxy.aclose()
        self._servers.clear()
