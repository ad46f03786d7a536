"""Two `wharf-router gateway` processes as peers in front of simulated vLLM pods
(`wharf-engine-sim`): what one replica places, the other routes to the same pod; a message
with a wrong token is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_with_enginesim import MODEL, GatewayProcess, endpoints

from wharf_e2e.enginesim.fleet import SimFleet, metric, scrape
from wharf_e2e.testing import free_port, wait_until
from wharf_router.gateway.peers import PeerMessage, Placement, PodLoad, encode
from wharf_router.gateway.prefix import block_hashes

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

GROUPS = 3


def _system(group: int) -> str:
    return " ".join(f"g{group}w{i}" for i in range(800))  # about 25 blocks of 256 bytes


def _served(pods: list[str], before: list[dict[str, float]]) -> list[str]:
    """The pods that were sent a prompt since `before`."""
    out = []
    for url, b in zip(pods, before, strict=True):
        done = "vllm:prefix_cache_queries_total"  # prompt tokens looked up
        if metric(scrape(url), done) > metric(b, done):
            out.append(url)
    return out


def _send(gateway: str, pods: list[str], group: int, question: str) -> str:
    before = [scrape(pod) for pod in pods]
    r = httpx.post(
        f"{gateway}/v1/completions",
        json={"model": MODEL, "prompt": f"{_system(group)} {question}", "max_tokens": 2},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    served = _served(pods, before)
    assert len(served) == 1, served
    return served[0]


def _peer_messages(gateway: GatewayProcess, direction: str, outcome: str) -> float:
    return metric(
        gateway.metrics(), "wharf_router_peer_messages_total", direction=direction, outcome=outcome
    )


def test_a_group_placed_through_one_replica_is_routed_to_its_pod_through_the_other(
    tmp_path: Path,
) -> None:
    token = tmp_path / "peer-token"
    token.write_text("a-shared-secret-of-some-length\n")
    port_a, port_b = free_port(), free_port()
    with SimFleet(4, ["--time-scale", "0"]) as fleet:
        pods = fleet.urls

        def replica(own: int, other: int, name: str) -> GatewayProcess:
            return GatewayProcess(
                [
                    *endpoints(fleet),
                    "--peer-listen",
                    f"127.0.0.1:{own}",
                    "--peer",
                    f"http://127.0.0.1:{other}",
                    "--peer-token-file",
                    str(token),
                    "--peer-name",
                    name,
                ],
                tmp_path / f"{name}.log",
            )

        with replica(port_a, port_b, "a") as a, replica(port_b, port_a, "b") as b:
            # each group's first request, through A: three groups on three different pods
            placed = {g: _send(a.url, pods, g, "first question") for g in range(GROUPS)}
            assert len(set(placed.values())) == GROUPS, placed
            # all three: A may have started before B listened (it sends again what failed), and
            # the first message B takes may hold only the first placement
            wait_until(
                lambda: metric(b.metrics(), "wharf_router_peer_placements_total") >= GROUPS,
                "B to take A's placements",
                30,
            )
            assert _peer_messages(a, "sent", "ok") >= 1
            # B has routed none of them: without A's placements each would be a cold prompt
            # for B, put on whichever pod it picked least lately
            for g in range(GROUPS):
                for turn in range(2):
                    assert _send(b.url, pods, g, f"question {turn} through B") == placed[g]

            # a message with the wrong token is refused, before its body is read
            assert metric(b.metrics(), "wharf_router_peers") == 1  # A
            fourth = _system(GROUPS) + " a group no replica has seen"
            target = placed[1]  # B, left alone, puts a new group on the pod it never picked
            hashes = block_hashes(MODEL, fourth.encode())
            poison = encode(
                PeerMessage(
                    "mallory",
                    (Placement(target.removeprefix("http://"), tuple(hashes)),),
                    {placed[0].removeprefix("http://"): PodLoad(1000, 1000, 10**6)},
                )
            )
            peer_url = f"http://127.0.0.1:{port_b}/peer/v1/news"

            def post(secret: str) -> int:
                headers = {"x-wharf-peer-token": secret}
                return httpx.post(peer_url, content=poison, headers=headers, timeout=10).status_code

            assert post("not-the-secret-at-all") == 401
            assert _peer_messages(b, "received", "unauthorized") == 1
            assert metric(b.metrics(), "wharf_router_peers") == 1  # no "mallory"
            assert _send(b.url, pods, 0, "after the refused message") == placed[0]
            # the public port serves no peer messages at all
            public = httpx.post(f"{b.url}/peer/v1/news", content=poison, timeout=10)
            assert public.status_code == 404
            # the same message with the token is taken: the check is what kept it out
            assert post("a-shared-secret-of-some-length") == 204
            before = [scrape(pod) for pod in pods]
            r = httpx.post(
                f"{b.url}/v1/completions",
                json={"model": MODEL, "prompt": fourth, "max_tokens": 2},
                timeout=60,
            )
            assert r.status_code == 200
            assert _served(pods, before) == [target]
