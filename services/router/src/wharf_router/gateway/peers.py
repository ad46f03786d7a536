"""What gateway replicas tell each other, so that two of them route as well as one. Pure.

A replica knows only its own placements (the prefix index) and its own queued prefill (the
`Pod` counts); the scraped engine metrics are all it sees of another replica's work, and they
lag. So every replica sends its peers, often and batched:

- the placements it made since its last message: the pod and the prompt's block hashes, the
  same list it inserted into its own index (the hashes are stable across processes:
  `prefix.block_hashes` uses xxHash, not Python's per-process `hash()`);
- a snapshot of its own per-pod counts: requests in flight, those still prefilling, and their
  prompt blocks still to compute.

A receiver inserts the placements into its own index and adds each peer's last snapshot to its
own counts when it scores pods (`pool.view_of`'s `extra`); a snapshot older than `ttl` seconds
counts for nothing (the peer is gone, or cut off). Everything is bounded: the message's size,
the placements per message and waiting to be sent, the peers remembered, the pods per snapshot.
The I/O (a listener of its own and a background sender) is in `peer_link.py`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wharf_router.gateway.prefix import PrefixIndex

VERSION = 1
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_PEERS = 16
MAX_PODS = 1024  # per snapshot
MAX_PLACEMENTS_PER_MESSAGE = 64  # about 350 KB at 256 hashes each
MAX_BACKLOG = 1024  # placements waiting to be sent; older ones are dropped first
MAX_HASHES = 65536  # per placement: the gateway's own bound on max_blocks
MAX_COUNT = 1_000_000
DEFAULT_TTL_S = 1.0
DEFAULT_HEARTBEAT_S = 0.25
PEER_NAME = _NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$")
_U64 = 2**64


class PeerMessageError(ValueError):
    """A peer's message that is not one: the text names the field."""


@dataclass(frozen=True, slots=True)
class PodLoad:
    """One replica's own requests on one pod."""

    in_flight: int = 0
    prefilling: int = 0
    pending_blocks: int = 0

    def __add__(self, other: PodLoad) -> PodLoad:
        return PodLoad(
            self.in_flight + other.in_flight,
            self.prefilling + other.prefilling,
            self.pending_blocks + other.pending_blocks,
        )


NO_LOAD = PodLoad()


@dataclass(frozen=True, slots=True)
class Placement:
    pod: str
    hashes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PeerMessage:
    sender: str
    placements: tuple[Placement, ...]
    load: Mapping[str, PodLoad]


def encode(message: PeerMessage) -> bytes:
    return orjson.dumps(
        {
            "v": VERSION,
            "sender": message.sender,
            "placements": [[p.pod, list(p.hashes)] for p in message.placements],
            "load": {
                pod: [c.in_flight, c.prefilling, c.pending_blocks]
                for pod, c in message.load.items()
            },
        }
    )


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise PeerMessageError(f"{where}: expected a name of at most 253 plain characters")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise PeerMessageError(f"{where}: expected a whole number from 0 to {MAX_COUNT}")
    return value


def decode(data: bytes) -> PeerMessage:
    """A peer's message, checked field by field (it comes from the network)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise PeerMessageError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PeerMessageError(f"message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PeerMessageError("message: expected a JSON object")
    if doc.get("v") != VERSION:
        raise PeerMessageError(f"v: expected {VERSION}, got {doc.get('v')!r}")
    sender = _name(doc.get("sender"), "sender")
    raw_placements = doc.get("placements", [])
    if not isinstance(raw_placements, list) or len(raw_placements) > MAX_PLACEMENTS_PER_MESSAGE:
        raise PeerMessageError(
            f"placements: expected a list of at most {MAX_PLACEMENTS_PER_MESSAGE}"
        )
    placements = []
    for i, item in enumerate(raw_placements):
        where = f"placements[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise PeerMessageError(f"{where}: expected [pod, [hash, ...]]")
        pod = _name(item[0], f"{where}[0]")
        hashes = item[1]
        if not isinstance(hashes, list) or len(hashes) > MAX_HASHES:
            raise PeerMessageError(f"{where}[1]: expected a list of at most {MAX_HASHES} hashes")
        for h in hashes:
            if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < _U64:
                raise PeerMessageError(f"{where}[1]: hashes are unsigned 64-bit integers")
        placements.append(Placement(pod, tuple(hashes)))
    raw_load = doc.get("load", {})
    if not isinstance(raw_load, dict) or len(raw_load) > MAX_PODS:
        raise PeerMessageError(f"load: expected a mapping of at most {MAX_PODS} pods")
    load: dict[str, PodLoad] = {}
    for pod, counts in raw_load.items():
        where = f"load[{pod!r:.80}]"
        _name(pod, where)
        if not isinstance(counts, list) or len(counts) != 3:
            raise PeerMessageError(f"{where}: expected [in_flight, prefilling, pending_blocks]")
        load[pod] = PodLoad(*(_count(c, where) for c in counts))
    return PeerMessage(sender, tuple(placements), load)


class Outbox:
    """This replica's news since its last message: placements (bounded, oldest dropped first)
    and whether its load changed."""

    def __init__(
        self,
        sender: str,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT_S,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.sender = _name(sender, "replica name")
        self.heartbeat = heartbeat
        self._placements: deque[Placement] = deque(maxlen=max_backlog)
        self._last_load: Mapping[str, PodLoad] | None = None
        self._last_sent = float("-inf")
        self.dropped = 0  # placements that never went out (the backlog overflowed)

    def placed(self, pod: str, hashes: list[int]) -> None:
        if hashes:
            if len(self._placements) == self._placements.maxlen:
                self.dropped += 1
            self._placements.append(Placement(pod, tuple(hashes)))

    def has_news(self) -> bool:
        return bool(self._placements)

    def take(self, load: Mapping[str, PodLoad], now: float) -> PeerMessage | None:
        """The next message, or None when there is nothing new to say and the last message is
        recent (a peer keeps a snapshot for its ttl: a heartbeat well within it keeps it)."""
        if (
            not self._placements
            and load == self._last_load
            and now - self._last_sent < self.heartbeat
        ):
            return None
        count = min(len(self._placements), MAX_PLACEMENTS_PER_MESSAGE)
        placements = tuple(self._placements.popleft() for _ in range(count))
        snapshot = dict(list(load.items())[:MAX_PODS])
        self._last_load = snapshot
        self._last_sent = now
        return PeerMessage(self.sender, placements, snapshot)


class PeerLoads:
    """Each peer's last load snapshot, and when it came."""

    def __init__(self, ttl: float = DEFAULT_TTL_S, max_peers: int = MAX_PEERS) -> None:
        self.ttl = ttl
        self.max_peers = max_peers
        self._peers: dict[str, tuple[float, Mapping[str, PodLoad]]] = {}
        self._sum: dict[str, PodLoad] | None = None  # cached sum of the fresh snapshots
        self._sum_until = float("-inf")  # when the cached sum's oldest snapshot expires

    def update(self, sender: str, load: Mapping[str, PodLoad], now: float) -> bool:
        """False when it is refused: `max_peers` other peers are fresh."""
        if sender not in self._peers and len(self._peers) >= self.max_peers:
            self._expire(now)
            if len(self._peers) >= self.max_peers:
                return False
        self._peers[sender] = (now, load)
        self._sum = None
        return True

    def _expire(self, now: float) -> None:
        for sender in [s for s, (at, _) in self._peers.items() if now - at > self.ttl]:
            del self._peers[sender]

    def peers(self, now: float) -> list[str]:
        """The peers whose snapshot is fresh."""
        return [s for s, (at, _) in self._peers.items() if now - at <= self.ttl]

    def extra(self, now: float) -> Mapping[str, PodLoad]:
        """Per pod, the sum of the fresh snapshots: what the peers have on it."""
        if self._sum is None or now > self._sum_until:
            self._expire(now)
            total: dict[str, PodLoad] = {}
            for _, load in self._peers.values():
                for pod, counts in load.items():
                    total[pod] = total.get(pod, NO_LOAD) + counts
            self._sum = total
            oldest = min((at for at, _ in self._peers.values()), default=float("inf"))
            self._sum_until = oldest + self.ttl
        return self._sum


def rank(own: str, peers: list[str]) -> int | None:
    """This replica's place among itself and its fresh peers, by name (None: no peers). The
    scheduler's tie-break gives each replica a different one of the tied pods."""
    if not peers:
        return None
    return sorted({own, *peers}).index(own)


def merge(
    message: PeerMessage,
    prefix: PrefixIndex,
    loads: PeerLoads,
    known_pods: Container[str],
    now: float,
) -> list[str]:
    """Take in a peer's message: its placements on pods this replica knows go into the prefix
    index (others are ignored: the index holds only pods it can route to), its snapshot
    replaces the peer's last. The pods of the placements taken, in the peer's order (the
    caller counts them as picks: a tie goes to the pod that no replica picked for longest)."""
    if not loads.update(message.sender, message.load, now):
        return []
    taken = []
    for placement in message.placements:
        if placement.pod in known_pods:
            prefix.insert(placement.pod, placement.hashes)
            taken.append(placement.pod)
    return taken
