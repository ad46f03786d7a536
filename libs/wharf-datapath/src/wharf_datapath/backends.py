"""What the proxies need from whoever owns the replicas: the `Backends` protocol.

The proxies know nothing of services, revisions or pods. For each request they ask the backends
to `resolve` the Host and path to a `Route`, `acquire` a `Lease` on one replica for that route
(the backends may hold the request while a replica starts, and pick by weight or load), and
`release` it when the response is done. A replica that refuses connections is reported with
`mark_unreachable`; the backends report replicas that went away with the callback given to
`watch_gone`, so the proxies drop their pooled connections to them.

The local runtime implements it over its processes (`wharf_local.ingress`); a router can
implement it over a list of pods.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

LOOPBACK = "127.0.0.1"


class Unavailable(Exception):
    """No replica can take the request (none became ready in time): answered 503."""


@dataclass(slots=True)
class Route:
    """Where a request goes, as the backends resolved it.

    `target` is the backends' own handle (given back to `acquire`); `path` is the path to send
    upstream (a routing prefix may have been cut); `key` names the destination without the path:
    requests with equal keys go to the same replicas (the gRPC proxy keys its servers by it).
    """

    target: Any
    path: str
    key: Hashable


@dataclass(slots=True)
class Lease:
    """One replica, held for one request.

    `label` names what served the request (a revision, a pod); the proxies send it back in a
    response header when they are given one. `handle` is the backends' own.
    """

    http_port: int
    grpc_port: int | None
    label: str
    handle: Any = None
    host: str = LOOPBACK


# host, port of a replica that is gone
GoneCallback = Callable[[str, int], None]


class Backends(Protocol):
    def resolve(self, host: str | None, path: str) -> Route | str:
        """The route for a request's Host header and path, or why there is none (a 404)."""
        ...

    async def acquire(self, route: Route) -> Lease:
        """A replica for one request; raises `Unavailable` when none can serve it."""
        ...

    def release(self, lease: Lease) -> None:
        """The request is over (its response sent, or it failed)."""
        ...

    def mark_unreachable(self, lease: Lease) -> None:
        """The replica refused a connection: do not lease it again until it is back."""
        ...

    def watch_gone(self, callback: GoneCallback) -> None:
        """Call `callback(host, port)` whenever a replica's process or pod goes away."""
        ...
