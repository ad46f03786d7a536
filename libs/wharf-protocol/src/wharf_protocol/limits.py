"""Size (and head time) limits shared by every hop of the data plane (ingress, router, model server).

A request that one hop accepts must not be refused by the next one, so every server and proxy
takes its limits from here, and the environment variables below move them everywhere at once.
KServe's model server takes gRPC limits as flags (`--grpc_max_send_message_length`,
`--grpc_max_receive_message_length`); ours default to the same value as the REST body limit, so
a tensor that fits one protocol fits the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

MiB = 1024 * 1024

# The largest request body (REST) or message (gRPC) a hop accepts, in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * MiB
MAX_MESSAGE_BYTES_ENV = "WHARF_MAX_MESSAGE_BYTES"


def max_message_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The configured limit: `$WHARF_MAX_MESSAGE_BYTES` when set (a positive integer), else the
    default. A malformed value raises ValueError naming the variable."""
    env = os.environ if environ is None else environ
    raw = env.get(MAX_MESSAGE_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MESSAGE_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_MESSAGE_BYTES_ENV}={raw!r}: expected a number of bytes") from None
    if value <= 0:
        raise ValueError(f"{MAX_MESSAGE_BYTES_ENV}={raw!r}: must be positive")
    return value


# How long an HTTP/1.1 request line and headers may take to arrive whole (slow clients).
DEFAULT_HEAD_TIMEOUT_S = 30.0
HEAD_TIMEOUT_ENV = "WHARF_HTTP_HEAD_TIMEOUT"


def head_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """`$WHARF_HTTP_HEAD_TIMEOUT` (seconds, positive) when set, else the default. A malformed
    value raises ValueError naming the variable."""
    env = os.environ if environ is None else environ
    raw = env.get(HEAD_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEAD_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{HEAD_TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{HEAD_TIMEOUT_ENV}={raw!r}: must be a positive number of seconds")
    return value


# The slowest average rate, in bytes a second, at which a request body may arrive once its head
# is in (after a grace period); a slower body is answered 408 (slow clients).
DEFAULT_MIN_BODY_RATE = 1024
MIN_BODY_RATE_ENV = "WHARF_HTTP_MIN_BODY_RATE"


def min_body_rate(environ: Mapping[str, str] | None = None) -> int:
    """`$WHARF_HTTP_MIN_BODY_RATE` (bytes a second, positive) when set, else the default. A
    malformed value raises ValueError naming the variable."""
    env = os.environ if environ is None else environ
    raw = env.get(MIN_BODY_RATE_ENV, "").strip()
    if not raw:
        return DEFAULT_MIN_BODY_RATE
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MIN_BODY_RATE_ENV}={raw!r}: expected bytes a second") from None
    if value <= 0:
        raise ValueError(f"{MIN_BODY_RATE_ENV}={raw!r}: must be positive")
    return value


def grpc_size_options(limit: int) -> list[tuple[str, int]]:
    """gRPC channel/server options that apply one limit to both directions."""
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
