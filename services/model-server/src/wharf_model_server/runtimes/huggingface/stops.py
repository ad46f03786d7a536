"""Stop strings over streamed text, pure: what may be sent now, and whether a stop was hit.

A stop string may arrive split over several pieces, so the tail that could still be the start
of one is held back until the next piece (or the end) decides it. The stop string itself is
never sent, as in OpenAI's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StopScanner:
    stops: tuple[str, ...]
    _pending: str = ""
    stopped: bool = field(default=False, init=False)

    def feed(self, piece: str) -> str:
        """The text that can be sent after `piece` arrived ('' once stopped)."""
        if self.stopped:
            return ""
        text = self._pending + piece
        if not self.stops:
            self._pending = ""
            return text
        hits = [i for i in (text.find(s) for s in self.stops if s) if i >= 0]
        if hits:
            self.stopped = True
            self._pending = ""
            return text[: min(hits)]
        hold = self._held_tail(text)
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What is left when the generation ends without a stop."""
        rest, self._pending = self._pending, ""
        return "" if self.stopped else rest

    def _held_tail(self, text: str) -> int:
        """Length of the longest suffix of `text` that begins some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if stop.startswith(text[-n:]):
                    best = n
                    break
        return best


def stop_list(stop: str | list[str] | None, limit: int = 16, max_len: int = 256) -> tuple[str, ...]:
    """The request's `stop`, validated: at most `limit` strings of at most `max_len` chars."""
    if stop is None:
        return ()
    values = [stop] if isinstance(stop, str) else list(stop)
    if len(values) > limit:
        raise ValueError(f"stop: at most {limit} strings, got {len(values)}")
    for value in values:
        if len(value) > max_len:
            raise ValueError(f"stop: strings of at most {max_len} characters")
    return tuple(v for v in values if v)
