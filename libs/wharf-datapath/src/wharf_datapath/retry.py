"""When a request may be sent again to another replica. Pure.

Only failures before any response byte are retried, and only when the request body is still
at hand (buffered, or not yet read from the client):

- the connection was refused: nothing reached the replica, any method may be resent;
- the connection was reset without an answer: the replica's socket was closed with the request
  unread (the kernel resets such a socket), as when a replica is killed with requests in its
  accept queue; any method may be resent;
- the connection was closed without an answer: the replica may have read the request and died
  on it, so only idempotent methods are resent. (A stale keep-alive connection that the
  replica had closed while idle is a third case, retried inside the upstream pool: it is the
  usual keep-alive race, not a request the replica saw.)

A request that made a replica die is not sent to the next one unless its method says that is
safe: a request that crashes servers would otherwise crash them all.

gRPC says less: a call that failed before any response is UNAVAILABLE either way, and only its
details tell a connection that could not be made (retried: nothing was sent) from one that broke
(not retried: every gRPC call is a POST).
"""

from __future__ import annotations

from enum import Enum

# tries of one request, the first included
MAX_ATTEMPTS = 4
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class Failure(Enum):
    REFUSED = "refused"  # nothing was sent
    RESET = "reset"  # sent, reset before any response byte: not read
    UNANSWERED = "unanswered"  # sent, closed before any response byte: maybe read


def may_resend(method: str, failure: Failure, *, replayable: bool, attempt: int) -> bool:
    """Whether try number `attempt` (1-based) that failed so may be followed by another."""
    if attempt >= MAX_ATTEMPTS or not replayable:
        return False
    return failure is not Failure.UNANSWERED or method in IDEMPOTENT_METHODS


# what grpc-core says when no connection to the replica could be made
_GRPC_NOT_CONNECTED = ("failed to connect", "connection refused", "connect failed")


def grpc_failure(code_name: str, details: str) -> Failure | None:
    """The failure of a gRPC call that got no response, from its status code and details;
    None when the replica answered (any status but UNAVAILABLE is the replica's answer)."""
    if code_name != "UNAVAILABLE":
        return None
    lowered = details.lower()
    if any(marker in lowered for marker in _GRPC_NOT_CONNECTED):
        return Failure.REFUSED
    return Failure.UNANSWERED
