"""Server-sent events as the OpenAI API streams them: one `data: <json>` event per chunk, a
blank line after each, and `data: [DONE]` at the end.

Writing: `encode_event(chunk)` and `DONE_EVENT`. Reading: `SSEDecoder` takes the bytes as they
arrive, in pieces of any size, and gives back each event's data (the `[DONE]` marker included,
so a proxy can tell a finished stream from a cut one); `parse_data` turns one into a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from wharf_protocol.openai._base import OpenAIModel

DONE = "[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"
CONTENT_TYPE = "text/event-stream"

M = TypeVar("M", bound=BaseModel)


def encode_event(payload: OpenAIModel | dict[str, Any] | str | bytes) -> bytes:
    """One `data:` event. A model is written with `wire()`, a dict as JSON, text as is."""
    if isinstance(payload, OpenAIModel):
        data = payload.wire_json()
    elif isinstance(payload, dict):
        data = orjson.dumps(payload)
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = payload
    if b"\n" in data or b"\r" in data:  # only text can hold a line break; JSON never does
        return b"".join(b"data: " + line + b"\n" for line in data.splitlines()) + b"\n"
    return b"data: " + data + b"\n\n"


class SSEDecoder:
    """Incremental reader of an event stream (the WHATWG rules that matter here): lines end
    with LF, CRLF or CR; `data:` lines of one event are joined with LF; comments (`:`) and the
    other fields (`event`, `id`, `retry`) are skipped; an event ends at a blank line."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[str]:
        """Add bytes; return the data of every event they complete."""
        self._buffer += chunk
        events: list[str] = []
        while True:
            end, skip = _line_end(self._buffer)
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + skip :]
            self._line(line, events)
        return events

    def close(self) -> list[str]:
        """The last event when the stream ended without its blank line."""
        events: list[str] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data).decode())
                self._data = []
            return
        if line.startswith(b":"):
            return
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)


def _line_end(buffer: bytes) -> tuple[int, int]:
    """Index and length of the first line ending; (-1, 0) when the buffer holds none yet. A CR
    at the very end may be the first half of a CRLF, so it waits for more bytes."""
    cr, lf = buffer.find(b"\r"), buffer.find(b"\n")
    if lf >= 0 and (cr < 0 or lf < cr):
        return lf, 1
    if cr >= 0:
        if cr + 1 == len(buffer):
            return -1, 0
        return cr, 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1
    return -1, 0


def iter_events(chunks: Iterable[bytes]) -> Iterator[str]:
    """The data of each event in a stream of byte chunks, `[DONE]` included."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()


async def aiter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """`iter_events` for an async stream (an HTTP client's response body)."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


def parse_data(data: str, model: type[M]) -> M | None:
    """One event's data as `model`; None for the `[DONE]` marker."""
    if data.strip() == DONE:
        return None
    return model.model_validate_json(data)
