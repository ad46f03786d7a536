"""The gRPC proxy: one message limit at every hop, routing by metadata and by authority."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from wharf_datapath.grpc_proxy import GrpcRouter, size_options

LIMIT = 16 * 1024 * 1024
METHOD = "/test.Echo/Echo"


class _Echo(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> Any:
        async def echo(request: bytes, context: Any) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo) if details.method == METHOD else None


@pytest.fixture
async def router(list_backends: Any) -> AsyncIterator[GrpcRouter]:
    # the replica accepts more than the proxy: the limit seen is the proxy's
    server = grpc.aio.server(handlers=[_Echo()], options=size_options(4 * LIMIT))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    router = GrpcRouter(
        list_backends([0], [port]), max_message_bytes=LIMIT, label_metadata="x-served-by"
    )
    try:
        yield router
    finally:
        await router.aclose()
        await server.stop(None)


async def _call(router: GrpcRouter, authority: str | None, message: bytes, **kw: Any) -> Any:
    _, port = await router.port_for(authority)
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=size_options(4 * LIMIT)
    ) as channel:
        call = channel.unary_unary(METHOD)(message, **kw)
        reply = await call
        return reply, dict(await call.initial_metadata())


@pytest.mark.parametrize("size", [7 * 1024 * 1024, LIMIT - 64], ids=["7MiB", "near-limit"])
async def test_large_messages_pass_both_ways(router: GrpcRouter, size: int) -> None:
    message = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    reply, metadata = await _call(router, None, message, metadata=(("host", "svc.test"),))
    assert reply == message
    assert metadata["x-served-by"] == "replica-0"


async def test_a_message_over_the_limit_is_resource_exhausted(router: GrpcRouter) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(router, None, b"x" * (LIMIT + 1), metadata=(("host", "svc.test"),))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_routed_by_authority_or_refused_with_a_hint(router: GrpcRouter) -> None:
    reply, _ = await _call(router, "svc.test:8081", b"hi")
    assert reply == b"hi"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(router, "127.0.0.1:8081", b"hi")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "grpc.default_authority" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(router, None, b"hi", metadata=(("host", "other.test"),))
    assert "unknown host 'other.test'" in (err.value.details() or "")


# -- a replica that went away -----------------------------------------------------------------


@pytest.fixture
async def one_dead_replica(
    list_backends: Any, refused_port: Any
) -> AsyncIterator[tuple[GrpcRouter, Any, int]]:
    """Two replicas: the first refuses connections (its process died), the second echoes."""
    server = grpc.aio.server(handlers=[_Echo()], options=size_options(LIMIT))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    dead = await refused_port()
    backends = list_backends([dead, port], [dead, port])
    router = GrpcRouter(backends, max_message_bytes=LIMIT, label_metadata="x-served-by")
    try:
        yield router, backends, dead
    finally:
        await router.aclose()
        await server.stop(None)


async def test_a_call_to_a_replica_that_refuses_is_sent_to_another(
    one_dead_replica: tuple[GrpcRouter, Any, int],
) -> None:
    router, backends, dead = one_dead_replica
    reply, metadata = await _call(router, None, b"hi", metadata=(("host", "svc.test"),))
    assert reply == b"hi"
    assert metadata["x-served-by"] == "replica-1"
    assert backends.unreachable == {dead}
    assert backends.released == backends.leased == 2


def test_only_a_connection_that_was_never_made_counts_as_refused() -> None:
    from wharf_datapath.retry import Failure, grpc_failure

    assert grpc_failure("UNAVAILABLE", "failed to connect to all addresses") is Failure.REFUSED
    assert grpc_failure("UNAVAILABLE", "Socket closed") is Failure.UNANSWERED
    assert grpc_failure("UNAVAILABLE", "model iris is not ready") is Failure.UNANSWERED
    assert grpc_failure("INVALID_ARGUMENT", "bad tensor") is None
