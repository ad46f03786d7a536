"""API keys and per-key token rate limits. Pure (the clock is passed in).

The keys file lists `{name, key, tokens_per_minute?}`; the name (never the key) is what logs
and metrics show. A key's budget is a token bucket of `tokens_per_minute` that refills
continuously; a request is let in while the bucket is above zero and its tokens (the engine's
`usage`: prompt + completion) are taken when it ends, so the bucket can go below zero and the
next requests wait until it has refilled.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_KEYS_FILE_BYTES = 1024 * 1024
MAX_KEYS = 10_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class KeysError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    tokens_per_minute: float | None = None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, entries: list[tuple[str, ApiKey]]) -> None:
        self._by_digest = {_digest(secret): entry for secret, entry in entries}

    def lookup(self, presented: str) -> ApiKey | None:
        # a digest lookup: the time taken does not depend on how much of a key matched
        return self._by_digest.get(_digest(presented))

    def __len__(self) -> int:
        return len(self._by_digest)


def parse_keys(doc: Any, where: str) -> ApiKeys:
    items = doc.get("keys") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise KeysError(f"{where}: expected a list of keys (or a `keys:` list)")
    if len(items) > MAX_KEYS:
        raise KeysError(f"{where}: more than {MAX_KEYS} keys")
    entries: list[tuple[str, ApiKey]] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        at = f"{where}: keys[{i}]"
        if not isinstance(item, dict):
            raise KeysError(f"{at}: expected a mapping with name and key")
        unknown = set(item) - {"name", "key", "tokens_per_minute"}
        if unknown:
            raise KeysError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
        name, key, tpm = item.get("name"), item.get("key"), item.get("tokens_per_minute")
        if not isinstance(name, str) or not _NAME.match(name):
            raise KeysError(f"{at}.name must be a short name (letters, digits, . _ -)")
        if name in names:
            raise KeysError(f"{at}.name {name!r} appears twice")
        if not isinstance(key, str) or not 16 <= len(key) <= 256:
            raise KeysError(f"{at}.key must be a string of 16 to 256 characters")
        if tpm is not None and (not isinstance(tpm, int | float) or tpm <= 0):
            raise KeysError(f"{at}.tokens_per_minute must be a positive number")
        names.add(name)
        entries.append((key, ApiKey(name, float(tpm) if tpm is not None else None)))
    return ApiKeys(entries)


def load_keys_file(path: Path) -> ApiKeys:
    where = f"--api-keys-file {path}"
    try:
        if path.stat().st_size > MAX_KEYS_FILE_BYTES:
            raise KeysError(f"{where}: larger than {MAX_KEYS_FILE_BYTES} bytes")
        text = path.read_text()
    except OSError as exc:
        raise KeysError(f"{where}: {exc.strerror}") from exc
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        # the parser's message may quote the file's text, keys included: not shown
        raise KeysError(f"{where}: not valid YAML/JSON") from exc
    return parse_keys(doc, where)


class TokenBuckets:
    """One bucket per key name, full at first."""

    def __init__(self) -> None:
        self._level: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def _now_level(self, key: ApiKey, now: float) -> float:
        assert key.tokens_per_minute is not None
        tokens, at = self._level.get(key.name, (key.tokens_per_minute, now))
        return min(key.tokens_per_minute, tokens + (now - at) * key.tokens_per_minute / 60.0)

    def allows(self, key: ApiKey, now: float) -> float | None:
        """None when the key may send a request now, else the seconds until it may."""
        if key.tokens_per_minute is None:
            return None
        level = self._now_level(key, now)
        if level > 0:
            return None
        return (-level + 1) * 60.0 / key.tokens_per_minute

    def spend(self, key: ApiKey, tokens: int, now: float) -> None:
        if key.tokens_per_minute is None or tokens <= 0:
            return
        self._level[key.name] = (self._now_level(key, now) - tokens, now)
