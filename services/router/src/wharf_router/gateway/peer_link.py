"""The peer exchange's I/O: a listener of its own for peers' messages, and a background sender.

The listener is not the public port: an OpenAI client must not be able to write into the
prefix index. It speaks just enough HTTP/1.1 (persistent connections) for one call,
`POST /peer/v1/news` with an orjson body (peers.py), checks the shared token
(`x-wharf-peer-token`, compared in constant time) before it reads the body, and bounds the
head, the body and the connections.

The sender wakes on every placement and every change of this replica's counts (and every
`poll` seconds, for the heartbeat), at most once per `gap`, takes the outbox's message, and hands the encoded bytes to one queue per peer;
each peer's task posts them over the gateway's upstream client (a kept-alive connection). Nothing
here runs on a request's path: a pick only appends to the outbox and sets an event. A peer that
fails is left alone for `retry_after` seconds (its messages are dropped, not queued), and each
peer's failures are logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wharf_datapath.upstream import UpstreamPool
from wharf_router.common.tasks import cancel_all
from wharf_router.gateway.endpoints import Endpoint, EndpointError, EndpointSource, normalize_url
from wharf_router.gateway.peers import (
    MAX_MESSAGE_BYTES,
    MAX_PEERS,
    Outbox,
    PeerMessage,
    PeerMessageError,
    PodLoad,
    decode,
    encode,
)

log = logging.getLogger("wharf.router.gateway")

NEWS_PATH = "/peer/v1/news"
TOKEN_HEADER = b"x-wharf-peer-token"
MAX_HEAD_BYTES = 8192
MAX_CONNECTIONS = 4 * MAX_PEERS
MAX_TOKEN_BYTES = 4096
# a peer sends at least a heartbeat every fraction of a second: a connection quiet for this
# long (or one that trickles a message) is not a peer, and must not hold a connection slot
IDLE_TIMEOUT_S = 10.0
QUEUE_PER_PEER = 32  # encoded messages waiting for one peer; the oldest is dropped past it
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class PeerConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PeerSettings:
    listen: tuple[str, int] | None = None  # where peers' messages are taken
    peers: tuple[str, ...] = ()  # static peer base URLs
    token: bytes | None = None  # shared secret; None only when nothing is listened for
    name: str = ""  # this replica's name in its messages ("" : host name and process id)
    poll: float = 0.1  # seconds between heartbeat checks when no news wakes the sender
    gap: float = 0.001  # at least this long between two messages: news meanwhile is batched
    timeout: float = 1.0  # per message
    retry_after: float = 1.0  # a failed peer is skipped this long
    # the gateway's own pods, watched (Kubernetes): peers besides the static ones
    source: EndpointSource | None = None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PeerConfigError(f"--peer-listen {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_peer_url(value: str) -> str:
    try:
        return normalize_url(value, "--peer")
    except EndpointError as exc:
        raise PeerConfigError(str(exc)) from None


def load_token(path: Path) -> bytes:
    """The shared secret: the file's first line, at least 16 bytes (never logged)."""
    try:
        if path.stat().st_size > MAX_TOKEN_BYTES:
            raise PeerConfigError(f"--peer-token-file {path}: larger than {MAX_TOKEN_BYTES} bytes")
        text = path.read_bytes().strip()
    except OSError as exc:
        raise PeerConfigError(f"--peer-token-file {path}: {exc.strerror}") from None
    if len(text) < 16 or b"\n" in text or not text.isascii():
        raise PeerConfigError(
            f"--peer-token-file {path}: expected one line of at least 16 ASCII characters"
        )
    return text


def default_name() -> str:
    """Host name (a pod's name in Kubernetes) and process id: unique among replicas on one
    machine too."""
    host = _NAME_CHARS.sub("-", socket.gethostname())[:200] or "gateway"
    return f"{host}-{os.getpid()}"


def discovered_peers(endpoints: list[Endpoint], own_names: Iterable[str]) -> list[str]:
    """The peer URLs of the gateway's pods as the watch lists them, this pod left out."""
    own = {n for n in own_names if n}
    return [e.url for e in endpoints if e.name not in own]


def _address(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    if not host:
        host, port = hostport, "80"
    return host.strip("[]"), int(port), ("/" + path).rstrip("/")


@dataclass
class _Peer:
    url: str
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_PER_PEER))
    skip_until: float = 0.0
    logged_at: float = float("-inf")
    sent: int = 0
    failed: int = 0


class PeerLink:
    """Sends this replica's news to its peers and takes theirs in (`on_message`)."""

    def __init__(
        self,
        settings: PeerSettings,
        outbox: Outbox,
        own_load: Callable[[], dict[str, PodLoad]],
        on_message: Callable[[PeerMessage], None],
        upstream: UpstreamPool,
        on_outcome: Callable[[str, str], None] = lambda kind, outcome: None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._own_load = own_load
        self._on_message = on_message
        self._upstream = upstream
        self._news = asyncio.Event()
        self._peers: dict[str, _Peer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._connections = 0
        # ("received", taken|own|unauthorized|too_large|malformed|not_found) and
        # ("sent", ok|failed): counted by the gateway's telemetry
        self._outcome = on_outcome

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.listen is not None:
            host, port = self.settings.listen
            self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD_BYTES)
        self.set_peers(self.settings.peers)
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._send_loop())
        if self.settings.source is not None:
            self._tasks["<watch>"] = loop.create_task(self._watch(self.settings.source))

    async def _watch(self, source: EndpointSource) -> None:
        # The controller passes the pod's name as --peer-name. The host name is the pod's name
        # too, cut to 63 characters: alone, it missed this pod when its name was longer.
        own = (self.settings.name, socket.gethostname())
        try:
            await source.run(
                lambda eps: self.set_peers([*self.settings.peers, *discovered_peers(eps, own)])
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the peer watch stopped")

    async def aclose(self) -> None:
        await cancel_all([self._loop_task, *self._tasks.values()])
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def set_peers(self, urls: Iterable[str]) -> None:
        """The current peer list (static, or from a watch): new peers start, gone ones stop."""
        wanted = list(dict.fromkeys(urls))[:MAX_PEERS]
        for url in [u for u in self._peers if u not in wanted]:
            del self._peers[url]
            task = self._tasks.pop(url, None)
            if task is not None:
                task.cancel()
        for url in wanted:
            if url not in self._peers:
                peer = self._peers[url] = _Peer(url)
                self._tasks[url] = asyncio.get_running_loop().create_task(
                    self._send_to(peer), name=f"peer {url}"
                )

    def placed(self, pod: str, hashes: list[int]) -> None:
        """A pick's placement (on the request's path: an append and an event)."""
        if self._peers:
            self.outbox.placed(pod, hashes)
            self._news.set()

    def news(self) -> None:
        """This replica's counts changed (a lease began, saw its first token, or ended)."""
        if self._peers:
            self._news.set()

    # -- sending ----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll):
                    await self._news.wait()
            self._news.clear()
            if not self._peers:
                continue
            try:
                while True:
                    message = self.outbox.take(self._own_load(), time.monotonic())
                    if message is None:
                        break
                    data = encode(message)
                    # a peer that failed lately gets it too, when it is tried again: its
                    # placements are as useful a second later (the queue is bounded)
                    for peer in self._peers.values():
                        if peer.queue.full():
                            peer.queue.get_nowait()  # the oldest goes: newer news matters more
                        peer.queue.put_nowait(data)
                    if not self.outbox.has_news():
                        break
            except Exception:  # a bug here must not stop the exchange for good
                log.exception("peer exchange")
            await asyncio.sleep(self.settings.gap)

    async def _send_to(self, peer: _Peer) -> None:
        host, port, base = _address(peer.url)
        target = base + NEWS_PATH
        headers = [
            (b"host", f"{host}:{port}".encode()),
            (b"content-type", b"application/json"),
        ]
        if self.settings.token is not None:
            headers.append((TOKEN_HEADER, self.settings.token))
        retry: bytes | None = None
        while True:
            data = retry if retry is not None else await peer.queue.get()
            retry = None
            pause = peer.skip_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                async with asyncio.timeout(self.settings.timeout):
                    resp = await self._upstream.request(
                        (host, port), "POST", target, headers, data, max_body=4096
                    )
                    if resp.stream is not None:
                        async for _ in resp.stream:
                            pass
                if resp.status != 204:
                    raise OSError(f"answered {resp.status}")
                peer.sent += 1
                self._outcome("sent", "ok")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: pause this peer a while, then send again
                peer.failed += 1
                self._outcome("sent", "failed")
                now = time.monotonic()
                peer.skip_until = now + self.settings.retry_after
                retry = data
                if now - peer.logged_at >= 60.0:
                    peer.logged_at = now
                    log.warning("peer %s: %s (logged at most once a minute)", peer.url, exc)

    # -- receiving --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections += 1
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    if not await self._one(reader, writer):
                        break
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request on the connection; False to close it."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0]
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower().encode("latin-1")] = value.strip().encode("latin-1")
        if b"transfer-encoding" in headers:
            await _answer(writer, 411, b"a Content-Length is required")
            return False
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            await _answer(writer, 400, b"bad Content-Length")
            return False
        keep = headers.get(b"connection", b"").lower() != b"close"
        if method != "POST" or path != NEWS_PATH:
            self._outcome("received", "not_found")
            await _answer(writer, 404, f"only POST {NEWS_PATH} is served here".encode())
            return False
        token = self.settings.token
        presented = headers.get(TOKEN_HEADER)
        if token is not None and (presented is None or not hmac.compare_digest(presented, token)):
            self._outcome("received", "unauthorized")
            await _answer(writer, 401, b"a valid peer token is required")
            return False  # the body is not read: close
        if not 0 <= length <= MAX_MESSAGE_BYTES:
            self._outcome("received", "too_large")
            await _answer(writer, 413, f"messages are at most {MAX_MESSAGE_BYTES} bytes".encode())
            return False
        body = await reader.readexactly(length)
        try:
            message = decode(body)
        except PeerMessageError as exc:
            self._outcome("received", "malformed")
            await _answer(writer, 400, str(exc).encode())
            return keep
        if message.sender != self.outbox.sender:
            self._on_message(message)
            self._outcome("received", "taken")
        else:  # a replica listed as its own peer: its own counts must not count twice
            self._outcome("received", "own")
        await _answer(writer, 204, b"")
        return keep


async def _answer(writer: asyncio.StreamWriter, status: int, text: bytes) -> None:
    reason = {204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              411: "Length Required", 413: "Content Too Large"}[status]  # fmt: skip
    head = f"HTTP/1.1 {status} {reason}\r\n"
    if status != 204:
        head += f"content-type: text/plain\r\ncontent-length: {len(text)}\r\n"
    writer.write(head.encode() + b"\r\n" + (text if status != 204 else b""))
    await writer.drain()
