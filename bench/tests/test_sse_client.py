"""bench/sse_client.py, the benchmarks' light client of streamed chats: it must give the figures
the httpx client of `llm_worker.py` gives (the time to the first event with content, completion
tokens from `usage`) for the framings a server may choose (events split across chunks or several
in one, CRLF line ends, a body with a length or ended by a close), take the first content's time
when it comes (not at the end of the body), reuse its connection and replace one the server
closed, and fail loudly on an error status, an error event, a stream cut short or one without
usage. Against hand-written answers on loopback sockets, and against the engine simulator
(uvicorn, as vLLM's server)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from wharf_e2e.enginesim.fleet import SimFleet

BENCH = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    # bench/ is a folder of scripts: loaded from their paths, bench/ on sys.path for their
    # imports of each other
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"wharf_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sse = _load("sse_client")
CLOSE = object()  # in an answer: the server closes the connection there
Piece = bytes | float | object  # bytes to write, seconds to wait, or CLOSE
Result = tuple[float | None, float, int]


def _event(doc: object) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


ROLE = _event(
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": None}
)
TOKEN = _event({"choices": [{"index": 0, "delta": {"content": " wharf"}}], "usage": None})
USAGE = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 7}})
DONE = b"data: [DONE]\n\n"
STREAM = ROLE + TOKEN + TOKEN + USAGE + DONE
CRLF = STREAM.replace(b"\n", b"\r\n")
CHUNKED = "transfer-encoding: chunked\r\n"


def _chunk(piece: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(piece), piece)


def _chunked(pieces: Sequence[bytes]) -> bytes:
    return b"".join(_chunk(p) for p in pieces) + b"0\r\n\r\n"


def _head(status: int, headers: str, version: str = "HTTP/1.1") -> bytes:
    return f"{version} {status} X\r\ncontent-type: text/event-stream\r\n{headers}\r\n".encode()


async def _serve(
    answer: Callable[[int], Sequence[Piece]],
) -> tuple[asyncio.Server, list[asyncio.Task[None]]]:
    """A server that reads each request whole and plays `answer(n)` for the n-th request of
    the whole server; the connections it accepted are its handlers' tasks."""
    accepted: list[asyncio.Task[None]] = []
    served = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        accepted.append(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                served[0] += 1
                for piece in answer(served[0] - 1):
                    if piece is CLOSE:
                        return
                    if isinstance(piece, float):
                        await asyncio.sleep(piece)
                    else:
                        assert isinstance(piece, bytes)
                        writer.write(piece)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, accepted


def _run(
    answer: Callable[[int], Sequence[Piece]], requests: int = 2, pause: float = 0.0
) -> tuple[list[Result | BaseException], int]:
    """`requests` chats in turn on one client (`pause` seconds apart); each one's figures or
    its error, and the connections the server accepted."""

    async def main() -> tuple[list[Result | BaseException], int]:
        server, accepted = await _serve(answer)
        port = server.sockets[0].getsockname()[1]
        client = sse.ChatStreamClient("127.0.0.1", port, timeout=10)
        request = client.request_bytes({"model": "m", "stream": True})
        results: list[Result | BaseException] = []
        try:
            for _ in range(requests):
                try:
                    results.append(await client.chat(request))
                except Exception as exc:
                    results.append(exc)
                await asyncio.sleep(pause)
        finally:
            await client.aclose()
            # each handler sees its connection's end and closes its side
            await asyncio.wait_for(asyncio.gather(*accepted), 10)
            server.close()
            await server.wait_closed()
        return results, len(accepted)

    return asyncio.run(main())


def _tokens(results: list[Result | BaseException]) -> list[int]:
    out = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        out.append(result[2])
    return out


FRAMINGS = {
    "event-per-chunk": [ROLE, TOKEN, TOKEN, USAGE, DONE],  # as vLLM sends them
    "one-chunk": [STREAM],
    "split": [STREAM[:10], STREAM[10:97], STREAM[97:]],
    "split-usage": [ROLE + TOKEN[:5], TOKEN[5:] + TOKEN + USAGE[:-1], USAGE[-1:] + DONE],
    "crlf": [CRLF[:150], CRLF[150:]],
    # the first piece ends with the CR of an event's blank line
    "crlf-split-in-its-middle": [
        CRLF[: CRLF.index(b"\r\n\r\n") + 3],
        CRLF[CRLF.index(b"\r\n\r\n") + 3 :],
    ],
    "no-space-after-data": [STREAM.replace(b"data: ", b"data:")],
    "usage-with-the-content": [
        ROLE,
        _event({"choices": [{"delta": {"content": "x"}}], "usage": {"completion_tokens": 7}}),
        DONE,
    ],
    "last-event-unterminated": [ROLE, TOKEN, USAGE[:-2]],
}


@pytest.mark.parametrize("pieces", FRAMINGS.values(), ids=FRAMINGS.keys())
def test_a_chunked_stream_gives_the_first_content_and_the_usage(pieces: list[bytes]) -> None:
    results, connections = _run(lambda n: [_head(200, CHUNKED) + _chunked(pieces)])
    assert _tokens(results) == [7, 7]
    for result in results:
        assert not isinstance(result, BaseException)
        first, done, _ = result
        assert first is not None and 0 < first <= done
    assert connections == 1  # kept alive


# httpx's client reads only `data: ` with its space (the light one takes `data:` too, as
# server-sent events allow)
SAME_AS_HTTPX = {k: v for k, v in FRAMINGS.items() if k != "no-space-after-data"}


@pytest.mark.parametrize("pieces", SAME_AS_HTTPX.values(), ids=SAME_AS_HTTPX.keys())
def test_the_figures_are_the_httpx_clients(pieces: list[bytes]) -> None:
    """llm_worker.py's httpx client (`--client httpx`) counts the same tokens and finds a
    first content in the same streams."""
    worker = sys.modules.get("wharf_bench_llm_worker") or _load("llm_worker")
    light, _ = _run(lambda n: [_head(200, CHUNKED) + _chunked(pieces)], requests=1)

    async def with_httpx() -> tuple[float, float, int]:
        server, accepted = await _serve(lambda n: [_head(200, CHUNKED) + _chunked(pieces)])
        port = server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                return await worker.one_stream(client, 4)  # type: ignore[no-any-return]
        finally:
            await asyncio.wait_for(asyncio.gather(*accepted), 10)
            server.close()
            await server.wait_closed()

    first, _, tokens = asyncio.run(with_httpx())
    assert not isinstance(light[0], BaseException)
    assert light[0][2] == tokens
    assert (light[0][0] is None) == (first != first)  # nan: no content in the stream


def test_the_first_content_is_timed_when_it_comes() -> None:
    """Before the rest of the stream, whatever the framing: chunked, with a length (written in
    two parts), to the close."""
    gap = 0.3
    body = [ROLE, gap, TOKEN, gap, USAGE + DONE]
    chunked = [_head(200, CHUNKED), *(_chunk(p) if isinstance(p, bytes) else p for p in body)]
    length = sum(len(p) for p in body if isinstance(p, bytes))
    answers: list[list[Piece]] = [
        [*chunked, b"0\r\n\r\n"],
        [_head(200, f"content-length: {length}\r\n"), *body],
        [_head(200, "connection: close\r\n"), *body, CLOSE],
    ]
    for answer in answers:
        results, _ = _run(lambda n, answer=answer: answer, requests=1)  # type: ignore[misc]
        result = results[0]
        assert not isinstance(result, BaseException), result
        first, done, tokens = result
        assert tokens == 7
        assert first is not None and gap <= first and done - first >= gap


def test_a_stream_without_content_has_no_first_token() -> None:
    results, _ = _run(lambda n: [_head(200, CHUNKED) + _chunked([ROLE + USAGE + DONE])])
    assert [(r[0], r[2]) for r in results if not isinstance(r, BaseException)] == [
        (None, 7),
        (None, 7),
    ]


def test_a_body_with_a_length_and_one_ended_by_a_close_are_read_whole() -> None:
    with_length, connections = _run(
        lambda n: [_head(200, f"content-length: {len(STREAM)}\r\n") + STREAM]
    )
    assert _tokens(with_length) == [7, 7]
    assert connections == 1
    for headers, version in [("connection: close\r\n", "HTTP/1.1"), ("", "HTTP/1.0")]:
        answer = [_head(200, headers, version) + STREAM, CLOSE]
        closed, connections = _run(lambda n, answer=answer: answer)  # type: ignore[misc]
        assert _tokens(closed) == [7, 7]
        assert connections == 2  # a new connection after the server closed its own


def test_a_connection_the_server_closed_without_saying_so_is_replaced() -> None:
    answer = [_head(200, f"content-length: {len(STREAM)}\r\n") + STREAM, CLOSE]
    results, connections = _run(lambda n: answer, pause=0.2)
    assert _tokens(results) == [7, 7]
    assert connections == 2


def test_an_error_status_fails_with_its_body() -> None:
    error = b'{"error":{"message":"model m is not served"}}'
    results, _ = _run(
        lambda n: [_head(404, f"content-length: {len(error)}\r\n") + error], requests=1
    )
    assert isinstance(results[0], sse.StreamError)
    assert "status 404" in str(results[0]) and "not served" in str(results[0])


@pytest.mark.parametrize(
    "pieces, why",
    [
        ([ROLE, TOKEN, _event({"error": {"message": "engine died"}}), DONE], "an error event"),
        ([ROLE, TOKEN, TOKEN, DONE], "without a usage object"),
    ],
    ids=["error-event", "no-usage"],
)
def test_a_broken_stream_fails(pieces: list[bytes], why: str) -> None:
    results, _ = _run(lambda n: [_head(200, CHUNKED) + _chunked(pieces)], requests=1)
    assert isinstance(results[0], sse.StreamError)
    assert why in str(results[0])


def test_a_stream_cut_short_fails_and_the_next_request_gets_a_new_connection() -> None:
    def answer(n: int) -> list[Piece]:
        if n == 0:
            return [_head(200, CHUNKED) + _chunk(ROLE) + _chunk(TOKEN)[:9], CLOSE]
        return [_head(200, CHUNKED) + _chunked([STREAM])]

    results, connections = _run(answer)
    assert isinstance(results[0], sse.StreamError)
    assert _tokens(results[1:]) == [7]
    assert connections == 2


def test_the_engine_simulator_streams_are_counted() -> None:
    """A real uvicorn server's chunked event stream, as vLLM's: streams of 5 tokens."""
    with SimFleet(args=["--model", "tiny", "--instant"]) as fleet:

        async def main() -> list[Result]:
            client = sse.ChatStreamClient("127.0.0.1", fleet.ports[0])
            body = {
                "model": "tiny",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 5,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            try:
                return [await client.chat(client.request_bytes(body)) for _ in range(3)]
            finally:
                await client.aclose()

        for first, done, tokens in asyncio.run(main()):
            assert tokens == 5
            assert first is not None and first <= done


def test_the_median_first_token_leaves_out_streams_without_content() -> None:
    assert sse.median_first_token_s([0.3, math.nan, 0.1, None, 0.2]) == 0.2
    assert math.isnan(sse.median_first_token_s([math.nan, None]))
