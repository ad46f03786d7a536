"""CPU per request of uvicorn's httptools protocol and of Wharf's bounded one, in process.

`wharf_datapath.http_head.HeadLimitedHttpProtocol` adds the head and body bounds (431, 408)
to uvicorn's protocol; this measures what they cost a request. No sockets and no client: each
protocol gets `--connections` connections with a transport that only counts its writes, and
every round feeds each connection one whole `POST` (a head and a 120-byte body, as `wrk` sends
the V2 request in `model_server.py`) and lets the loop run the application, a constant answer.
What is left is the protocol's own work per request (parsing, callbacks, the response cycle,
timers), the same work it does on a socket.

Run: `uv run python bench/inproc_http_head.py [--requests N] [--rounds R]`. A second protocol
class can be compared by passing `--against MODULE:FACTORY` (a callable returning the class).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from wharf_datapath.http_head import head_limited

BODY = b"x" * 120
REQUEST = (
    b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
)
HEADERS = [(b"content-type", b"application/json")]


async def constant(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b'{"ok":1}'})


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self._closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(protocol: Any, requests: int, connections: int) -> float:
    """CPU microseconds per request of `protocol` (a uvicorn `http=` value)."""
    config = uvicorn.Config(
        constant, http=protocol, lifespan="off", access_log=False, log_config=None
    )
    config.load()
    state = ServerState()
    protos: list[Any] = []
    for _ in range(connections):
        proto: Any = config.http_protocol_class(config, state, {})  # type: ignore[call-arg]
        proto.connection_made(CountingTransport())
        protos.append(proto)
    rounds = requests // connections
    started = time.process_time()
    for _ in range(rounds):
        for proto in protos:
            proto.data_received(REQUEST)
        # the request tasks read the body, answer, and complete their responses
        for _ in range(3):
            await asyncio.sleep(0)
    spent = time.process_time() - started
    writes = sum(proto.transport.writes for proto in protos)
    for proto in protos:
        proto.connection_lost(None)
    if writes != 2 * rounds * connections:  # a head and a body per answer
        raise RuntimeError(f"{writes} writes for {rounds * connections} requests")
    return spent / (rounds * connections) * 1e6


def factory(spec: str) -> Callable[[], Any]:
    module, _, name = spec.partition(":")
    made: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return made


async def run(args: argparse.Namespace) -> None:
    kinds: dict[str, Any] = {"uvicorn": HttpToolsProtocol, "wharf": head_limited()}
    if args.against:
        kinds["against"] = factory(args.against)()
    results: dict[str, list[float]] = {name: [] for name in kinds}
    for r in range(args.rounds):
        for name, protocol in kinds.items():
            us = await measure(protocol, args.requests, args.connections)
            results[name].append(us)
            print(f"round {r + 1} {name:8} {us:6.2f} us/request")
    for name, values in results.items():
        print(f"{name:8} median {statistics.median(values):6.2f} us/request")
    base = statistics.median(results["uvicorn"])
    for name, values in results.items():
        if name != "uvicorn":
            print(f"{name} - uvicorn: {statistics.median(values) - base:+.2f} us/request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32000, help="per protocol per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="MODULE:FACTORY returning another protocol class")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
