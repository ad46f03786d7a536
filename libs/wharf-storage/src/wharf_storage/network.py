"""Telling failures that retrying can fix from those it cannot, and the retry pace.

Transient (retried with backoff): connection refused or reset, timeouts, 5xx, 408, 429, and a
name server that does not answer (`EAI_AGAIN`). Permanent (fail at once): a host name that does
not exist (`EAI_NONAME`, `EAI_NODATA`, `EAI_FAIL`), and what the store answers for bad
credentials or a missing source (each backend maps those).
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable, Mapping

from wharf_storage.errors import TransferFailed
from wharf_storage.progress import Retry

# getaddrinfo answers that mean "this name does not exist", as opposed to "ask again later".
_NO_SUCH_NAME = {
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
        getattr(socket, "EAI_FAIL", None),
    )
    if code is not None
}


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): exponential, jittered, at most 15."""
    return float(min(10.0, 0.2 * 2.0 ** (attempt - 1)) * (0.5 + random.random()))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen) or len(seen) > 32:
            continue
        seen.append(current)
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)
        todo.extend(a for a in current.args if isinstance(a, BaseException))
        # urllib3 and botocore keep the socket error on attributes, not in the cause chain.
        for attr in ("reason", "error", "original_error"):
            value = getattr(current, attr, None)
            if isinstance(value, BaseException):
                todo.append(value)
    return seen


def no_such_host(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a DNS answer that the host name does not exist."""
    for e in _chain(exc):
        if isinstance(e, socket.gaierror) and e.errno in _NO_SUCH_NAME:
            return True
        text = str(e)
        if "Name or service not known" in text or "nodename nor servname" in text:
            return True
    return False


def behind_proxy(host: str, scheme: str, env: Mapping[str, str]) -> bool:
    """Whether the clients reach `host` through a proxy (`HTTPS_PROXY`, `HTTP_PROXY`,
    `ALL_PROXY`, any case, from `env` or the process environment, minus `NO_PROXY`): the
    proxy resolves the name then, and this machine may not be able to."""
    proxies: dict[str, str] = {}
    for source in (os.environ, env):
        for key, value in source.items():
            name = key.lower()
            if name.endswith("_proxy") and value:
                proxies[name[: -len("_proxy")]] = value
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    host = host.lower().strip("[]")
    for entry in proxies.get("no", "").split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return False
        entry = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        entry = entry.lstrip(".").strip("[]")
        if entry and (host == entry or host.endswith("." + entry)):
            return False
    return True


def resolve(
    host: str,
    port: int,
    *,
    what: str,
    attempts: int,
    on_retry: Callable[[Retry], None] | None = None,
) -> None:
    """Look `host` up before any transfer starts, so a name that does not exist fails at once
    (the clients would retry it for a long time) and a name server that does not answer is
    retried with backoff and reported. Raises TransferFailed."""
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            return
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_NAME:
                raise TransferFailed(
                    f"{what}: host {host!r} does not resolve (no such name); check the URI or "
                    "endpoint"
                ) from None
            if attempt == attempts:
                raise TransferFailed(
                    f"{what}: host {host!r} could not be resolved after {attempt} attempts"
                ) from None
            delay = backoff(attempt)
            if on_retry is not None:
                on_retry(Retry(host, attempt, attempts, "DNS lookup failed", delay))
            time.sleep(delay)
        except UnicodeError:
            raise TransferFailed(f"{what}: host {host!r} is not a valid name") from None
