"""The gRPC proxy: byte-level, every method and every streaming kind, one message size limit.

A `GrpcProxy` serves either one destination (`authority`: the connection's `:authority` named
it, see `sniffing`) or any, named by a `host` (or `x-wharf-host`) metadata entry, which wins when
both are there. `GrpcRouter` runs the proxies on loopback ports, one per destination seen so far
and one routed by metadata; the sniffer pipes each h2c connection to the right one.

The proxy's server and its channels to the replicas take the same message limit, so a message
that the client and the model server accept is not refused in between.

A call that could not reach its replica (the connection was refused: a replica that just died)
is sent to another one, as the HTTP proxy does (`retry`), when the request messages read so far
are still at hand (up to `buffer_bytes`) and nothing was answered yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable

import grpc

from wharf_datapath import retry
from wharf_datapath.backends import Backends, Lease, Unavailable
from wharf_datapath.upstream import Address

ROUTE_KEYS = ("host", "x-wharf-host")
# request bytes kept to resend a call to another replica (the HTTP proxy's buffer)
DEFAULT_BUFFER_BYTES = 1024 * 1024


class _Replayable:
    """The client's request messages, recorded as the upstream call reads them (up to a size),
    so that a call that reached no replica can be sent again with the same messages."""

    def __init__(self, requests: AsyncIterator[bytes], limit: int) -> None:
        self._requests = requests
        self._limit = limit
        self._sent: list[bytes] = []
        self._size = 0
        self.whole = True  # every message read so far is recorded

    async def messages(self) -> AsyncIterator[bytes]:
        for message in list(self._sent):
            yield message
        async for message in self._requests:
            if self.whole:
                self._size += len(message)
                if self._size <= self._limit:
                    self._sent.append(message)
                else:
                    self.whole, self._sent = False, []
            yield message


def size_options(limit: int) -> list[tuple[str, int]]:
    """gRPC server/channel options that apply one message limit to both directions."""
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


class GrpcProxy(grpc.GenericRpcHandler):
    def __init__(
        self,
        backends: Backends,
        *,
        max_message_bytes: int,
        authority: str | None = None,
        label_metadata: str | None = None,
        hint: str = "",
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        self.backends = backends
        self.buffer_bytes = buffer_bytes
        self.authority = authority
        self.label_metadata = label_metadata
        self.hint = hint
        self.options = size_options(max_message_bytes)
        self._channels: dict[Address, grpc.aio.Channel] = {}
        backends.watch_gone(self._forget)

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

    def _channel(self, address: Address) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(
                f"{address[0]}:{address[1]}", options=self.options
            )
        return channel

    def _forget(self, host: str, port: int) -> None:
        channel = self._channels.pop((host, port), None)
        if channel is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to close
                asyncio.get_running_loop().create_task(channel.close())

    async def _proxy(
        self,
        method: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> AsyncIterator[bytes]:
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
        found = dict(metadata)
        host = next((found[k] for k in ROUTE_KEYS if k in found), self.authority)
        if host is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                "no service named: set the channel's authority (grpc.default_authority) or a "
                f"`host` metadata entry{self.hint}",
            )
            return
        route = self.backends.resolve(host, "")
        if isinstance(route, str):
            await context.abort(grpc.StatusCode.NOT_FOUND, route)
            return
        forward = [(k, v) for k, v in metadata if k not in ROUTE_KEYS]
        replay = _Replayable(requests, self.buffer_bytes)
        attempt = 0
        while True:
            attempt += 1
            try:
                lease = await self.backends.acquire(route)
            except Unavailable as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                return
            answered = False
            try:
                if lease.grpc_port is None:
                    await context.abort(
                        grpc.StatusCode.UNIMPLEMENTED, f"{lease.label} serves no gRPC port"
                    )
                    return
                call: grpc.aio.StreamStreamCall[bytes, bytes] = self._channel(
                    (lease.host, lease.grpc_port)
                ).stream_stream(method)(replay.messages(), metadata=forward)  # type: ignore[arg-type]
                try:
                    async for response in call:
                        if not answered:
                            answered = True
                            await self._label(context, lease)
                        yield response
                    if not answered:
                        await self._label(context, lease)
                    return
                except grpc.aio.AioRpcError as exc:
                    failure = (
                        None
                        if answered
                        else retry.grpc_failure(exc.code().name, exc.details() or "")
                    )
                    if failure is retry.Failure.REFUSED:
                        self.backends.mark_unreachable(lease)
                    if failure is None or not retry.may_resend(
                        "POST", failure, replayable=replay.whole, attempt=attempt
                    ):
                        if not answered:
                            await self._label(context, lease)
                        await context.abort(exc.code(), exc.details() or "")
                        return
            finally:
                self.backends.release(lease)

    async def _label(self, context: grpc.aio.ServicerContext[bytes, bytes], lease: Lease) -> None:
        if self.label_metadata is not None:
            await context.send_initial_metadata(((self.label_metadata, lease.label),))

    async def aclose(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


class GrpcRouter:
    """The gRPC proxies, on loopback: one routed by metadata, and one per destination (a
    `Route.key`) seen so far, created on first use."""

    def __init__(
        self,
        backends: Backends,
        *,
        max_message_bytes: int,
        label_metadata: str | None = None,
        hint: str = "",
    ) -> None:
        self.backends = backends
        self.max_message_bytes = max_message_bytes
        self.label_metadata = label_metadata
        self.hint = hint
        self._servers: dict[Hashable, tuple[grpc.aio.Server, GrpcProxy, int]] = {}
        self._lock = asyncio.Lock()

    async def port_for(self, authority: str | None) -> tuple[str, int]:
        """Where the proxy for a connection with this `:authority` listens."""
        route = self.backends.resolve(authority, "") if authority else None
        key = None if route is None or isinstance(route, str) else route.key
        async with self._lock:
            entry = self._servers.get(key)
            if entry is None:
                proxy = GrpcProxy(
                    self.backends,
                    max_message_bytes=self.max_message_bytes,
                    authority=authority if key is not None else None,
                    label_metadata=self.label_metadata,
                    hint=self.hint,
                )
                server = grpc.aio.server(
                    handlers=[proxy], options=size_options(self.max_message_bytes)
                )
                port = server.add_insecure_port("127.0.0.1:0")
                await server.start()
                entry = self._servers[key] = (server, proxy, port)
        return "127.0.0.1", entry[2]

    async def aclose(self) -> None:
        for server, proxy, _ in self._servers.values():
            await server.stop(1.0)
            await proxy.aclose()
        self._servers.clear()
