"""The peer exchange's pure parts: messages, merging, load snapshots and their expiry, bounds,
hashes that agree across processes, and the flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from wharf_router.gateway import cli
from wharf_router.gateway.endpoints import Endpoint
from wharf_router.gateway.peer_link import PeerConfigError, discovered_peers
from wharf_router.gateway.peers import (
    MAX_MESSAGE_BYTES,
    MAX_PLACEMENTS_PER_MESSAGE,
    NO_LOAD,
    Outbox,
    PeerLoads,
    PeerMessage,
    PeerMessageError,
    Placement,
    PodLoad,
    decode,
    encode,
    merge,
)
from wharf_router.gateway.pool import Pod, own_load, view_of
from wharf_router.gateway.prefix import PrefixIndex, block_hashes

H = [2**64 - 1, 7, 123456789012345]


def message(sender: str = "gw-b", **load: PodLoad) -> PeerMessage:
    return PeerMessage(sender, (Placement("pod-1", tuple(H)),), load)


def test_a_message_survives_its_encoding() -> None:
    sent = message(**{"pod-1": PodLoad(3, 1, 40)})
    assert decode(encode(sent)) == sent


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"v": 2, "sender": "a"}, "v:"),
        ({"v": 1, "sender": "a b"}, "sender"),
        ({"v": 1, "sender": "a", "placements": [["pod", [-1]]]}, "placements[0][1]"),
        (
            b'{"v": 1, "sender": "a", "placements": [["pod", [18446744073709551616]]]}',
            "placements[0][1]",
        ),
        ({"v": 1, "sender": "a", "placements": [["pod", [True]]]}, "placements[0][1]"),
        ({"v": 1, "sender": "a", "placements": [["../x", [1]]]}, "placements[0][0]"),
        ({"v": 1, "sender": "a", "load": {"pod": [1, 2]}}, "load['pod']"),
        ({"v": 1, "sender": "a", "load": {"pod": [1, 2, -3]}}, "load['pod']"),
        (
            {"v": 1, "sender": "a", "placements": [["p", [1]]] * (MAX_PLACEMENTS_PER_MESSAGE + 1)},
            "placements",
        ),
    ],
)
def test_a_malformed_message_is_refused_naming_its_field(doc: object, field: str) -> None:
    with pytest.raises(PeerMessageError, match=field.replace("[", r"\[").replace("]", r"\]")):
        decode(doc if isinstance(doc, bytes) else orjson.dumps(doc))


def test_a_message_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(PeerMessageError, match="larger than"):
        decode(b" " * (MAX_MESSAGE_BYTES + 1))


def test_merging_inserts_placements_on_known_pods_only_and_keeps_the_snapshot() -> None:
    prefix, loads = PrefixIndex(), PeerLoads(ttl=1.0)
    msg = PeerMessage(
        "gw-b",
        (Placement("pod-1", (1, 2, 3)), Placement("unknown", (1, 2, 3))),
        {"pod-1": PodLoad(2, 1, 30)},
    )
    assert merge(msg, prefix, loads, {"pod-1", "pod-2"}, now=10.0) == ["pod-1"]
    assert prefix.match([1, 2, 3], ["pod-1", "pod-2", "unknown"]) == {"pod-1": 3}
    assert loads.extra(10.5) == {"pod-1": PodLoad(2, 1, 30)}


def test_snapshots_add_up_replace_the_peers_last_and_expire() -> None:
    loads = PeerLoads(ttl=1.0)
    loads.update("a", {"pod-1": PodLoad(1, 1, 10)}, now=0.0)
    loads.update("b", {"pod-1": PodLoad(2, 0, 0), "pod-2": PodLoad(1, 1, 5)}, now=0.5)
    assert loads.extra(0.9) == {"pod-1": PodLoad(3, 1, 10), "pod-2": PodLoad(1, 1, 5)}
    loads.update("a", {"pod-1": PodLoad(4, 0, 0)}, now=0.9)  # replaces a's last
    assert loads.extra(0.95)["pod-1"] == PodLoad(6, 0, 0)
    # b is silent for more than the ttl: gone, its counts count for nothing
    assert loads.extra(1.6) == {"pod-1": PodLoad(4, 0, 0)}
    assert loads.peers(1.6) == ["a"]
    assert loads.extra(2.0) == {}


def test_peers_past_the_limit_are_refused_until_one_goes_quiet() -> None:
    loads = PeerLoads(ttl=1.0, max_peers=2)
    assert loads.update("a", {}, 0.0) and loads.update("b", {}, 0.5)
    assert not loads.update("c", {"pod-1": PodLoad(9)}, 0.8)
    assert merge(message("c", **{"pod-1": PodLoad(9)}), PrefixIndex(), loads, {"pod-1"}, 0.8) == []
    assert loads.update("c", {}, 1.2)  # a went quiet at 1.0


def test_the_outbox_sends_news_then_only_heartbeats_and_bounds_its_backlog() -> None:
    out = Outbox("gw-a", heartbeat=0.25, max_backlog=100)
    load = {"pod-1": PodLoad(1, 1, 10)}
    out.placed("pod-1", [1, 2])
    first = out.take(load, now=0.0)
    assert first is not None and first.placements == (Placement("pod-1", (1, 2)),)
    assert out.take(load, now=0.1) is None  # nothing new, last message recent
    changed = out.take({"pod-1": PodLoad(1, 0, 0)}, now=0.11)
    assert changed is not None and changed.placements == ()
    heartbeat = out.take({"pod-1": PodLoad(1, 0, 0)}, now=0.4)
    assert heartbeat is not None and heartbeat.load == {"pod-1": PodLoad(1, 0, 0)}
    for i in range(150):
        out.placed("pod-2", [i])
    assert out.dropped == 50
    batch = out.take({}, now=0.5)
    assert batch is not None and len(batch.placements) == MAX_PLACEMENTS_PER_MESSAGE
    assert batch.placements[0].hashes == (50,)  # the oldest were dropped
    assert out.has_news()


def test_the_view_adds_the_peers_counts_to_the_gateways_own() -> None:
    pod = Pod(Endpoint("pod-1", "http://127.0.0.1:1"), in_flight=2, prefilling=1, pending_blocks=9)
    view = view_of(pod, 0, False, PodLoad(3, 2, 100))
    assert (view.in_flight, view.prefilling, view.pending_blocks) == (5, 3, 109)
    assert view_of(pod, 0, False) == view_of(pod, 0, False, NO_LOAD)
    assert own_load([pod, Pod(Endpoint("pod-2", "http://127.0.0.1:2"))]) == {
        "pod-1": PodLoad(2, 1, 9)
    }


def test_block_hashes_are_the_same_in_another_process() -> None:
    data = ("a system prompt " * 200).encode()
    code = (
        "import sys, orjson; from wharf_router.gateway.prefix import block_hashes; "
        "sys.stdout.buffer.write(orjson.dumps(block_hashes('m', sys.stdin.buffer.read())))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        input=data,
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},  # Python's own hash() would differ
    )
    hashes = block_hashes("m", data)
    assert len(hashes) == len(data) // 256 and orjson.loads(other.stdout) == hashes


def test_a_pods_own_entry_in_the_peer_watch_is_left_out() -> None:
    eps = [Endpoint("gw-0", "http://10.0.0.1:9000"), Endpoint("gw-1", "http://10.0.0.2:9000")]
    assert discovered_peers(eps, ["gw-0"]) == ["http://10.0.0.2:9000"]


def test_a_pod_whose_name_is_longer_than_its_host_name_is_left_out_by_its_peer_name() -> None:
    # Kubernetes cuts a pod's host name to 63 characters; the controller passes the whole name
    # as --peer-name (WHARF_PEER_NAME from metadata.name).
    long_name = "an-llm-service-with-a-long-name-kserve-router-scheduler-7f9c8d6b5-x2x9z"
    eps = [Endpoint(long_name, "http://10.0.0.1:9000"), Endpoint("gw-1", "http://10.0.0.2:9000")]
    assert discovered_peers(eps, [long_name, long_name[:63]]) == ["http://10.0.0.2:9000"]
    assert discovered_peers(eps, ["", long_name[:63]]) == [e.url for e in eps]


def _args(*flags: str) -> object:
    return cli.parser().parse_args(["--endpoint", "http://127.0.0.1:1", *flags])


def test_peer_flags(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-s3cret-s3cret\n")
    settings = cli.peer_settings(
        _args(
            "--peer-listen",
            "127.0.0.1:9100",
            "--peer",
            "http://10.0.0.2:9100/",
            "--peer-token-file",
            str(token),
        )
    )
    assert settings is not None
    assert settings.listen == ("127.0.0.1", 9100)
    assert settings.peers == ("http://10.0.0.2:9100",)
    assert settings.token == b"s3cret-s3cret-s3cret"
    assert cli.peer_settings(_args()) is None


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--peer-listen", "127.0.0.1:9100"], "--peer-token-file"),
        (["--peer-listen", "127.0.0.1:8080", "--peer-token-file", "TOKEN"], "public --port"),
        (["--peer-listen", "nohost", "--peer-token-file", "TOKEN"], "HOST:PORT"),
        (["--peer", "ftp://x:1", "--peer-token-file", "TOKEN"], "--peer"),
        (["--peer-kube-selector", "app=gw", "--peer-token-file", "TOKEN"], "--kube-namespace"),
        (["--peer-listen", "127.0.0.1:9100", "--peer-token-file", "SHORT"], "at least 16"),
        (["--peer-token-file", "TOKEN"], "need --peer-listen or --peer"),
    ],
)
def test_peer_flag_errors_name_the_flag(tmp_path: Path, flags: list[str], error: str) -> None:
    (tmp_path / "token").write_text("s3cret-s3cret-s3cret")
    (tmp_path / "short").write_text("short")
    paths = {"TOKEN": str(tmp_path / "token"), "SHORT": str(tmp_path / "short")}
    with pytest.raises(PeerConfigError, match=error):
        cli.peer_settings(_args(*(paths.get(f, f) for f in flags)))


def test_replicas_take_different_pods_of_a_tie() -> None:
    from random import Random

    from wharf_router.gateway.peers import rank
    from wharf_router.gateway.scheduling import PodView, Tuning, Weights, pick_default

    assert rank("gw-b", []) is None
    assert [rank("gw-a", ["gw-b"]), rank("gw-b", ["gw-a"])] == [0, 1]
    # a cold prompt, three idle pods; pod-c was picked lately (by either replica)
    pods = [PodView("pod-a"), PodView("pod-b"), PodView("pod-c", last_pick=5)]
    picks = [pick_default(pods, 10, Weights(), Tuning(), Random(0), r).name for r in (0, 1)]
    assert picks == ["pod-a", "pod-b"]
