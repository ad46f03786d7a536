"""Endpoints from a Service's EndpointSlices: what the conditions mean (pure), and the watch
following slices on a real API server (the slices are written by the test, as the
EndpointSlice controller would). Without the control plane binaries the kube test is skipped
with the reason, and fails under CI (WHARF_K8S_REQUIRED=1)."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from gateway_testkit import Start

from wharf_e2e.cluster import ControlPlane
from wharf_e2e.kube import Kube
from wharf_e2e.testing import until
from wharf_router.gateway.cli import build, parser
from wharf_router.gateway.endpoints import Endpoint, EndpointError
from wharf_router.gateway.kube_endpoints import (
    KubeEndpoints,
    KubeSelection,
    endpoints_from_slices,
)

SEL = KubeSelection(namespace="ns", selector="kubernetes.io/service-name=llm")


def _ep(
    ip: str,
    pod: str | None,
    ready: bool | None = True,
    serving: bool | None = True,
    terminating: bool | None = False,
) -> Any:
    return SimpleNamespace(
        addresses=[ip],
        conditions=SimpleNamespace(ready=ready, serving=serving, terminating=terminating),
        target_ref=SimpleNamespace(kind="Pod", name=pod) if pod else None,
    )


def _slice(
    name: str,
    endpoints: list[Any],
    ports: list[int] | None = None,
    labels: dict[str, str] | None = None,
    family: str = "IPv4",
) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, labels=labels or {}),
        address_type=family,
        endpoints=endpoints,
        ports=[SimpleNamespace(name="http", port=p, protocol="TCP") for p in ports or [8000]],
    )


def test_ready_endpoints_serve_and_terminating_ones_drain() -> None:
    view = endpoints_from_slices(
        [
            _slice(
                "llm-a",
                [
                    _ep("10.0.0.1", "pod-1"),
                    _ep("10.0.0.2", "pod-2", ready=None, serving=None, terminating=None),
                    _ep("10.0.0.3", "pod-3", ready=False, serving=True, terminating=True),
                    _ep("10.0.0.4", "pod-4", ready=False, serving=False, terminating=True),
                    _ep("10.0.0.5", "pod-5", ready=False, serving=False, terminating=False),
                ],
                ports=[8123],
            )
        ],
        SEL,
    )
    assert [(e.name, e.url, e.role) for e in view.serving] == [
        ("pod-1", "http://10.0.0.1:8123", "both"),
        ("pod-2", "http://10.0.0.2:8123", "both"),  # nil conditions: ready, not terminating
    ]
    assert view.draining == ["pod-3"]  # terminating and still serving; pod-4 no longer serves


def test_role_port_duplicates_and_address_families() -> None:
    view = endpoints_from_slices(
        [
            _slice("pre", [_ep("10.0.1.1", "p0")], labels={"llm-d.ai/role": "prefill"}),
            # the same pod in a second slice (a controller's move): counted once
            _slice("pre-2", [_ep("10.0.1.1", "p0")], labels={"llm-d.ai/role": "prefill"}),
            _slice(
                "dec-v6", [_ep("fd00::7", None)], labels={"llm-d.ai/role": "decode"}, family="IPv6"
            ),
            _slice("fqdn", [_ep("engine.example.com", "x")], family="FQDN"),
            _slice("two-ports", [_ep("10.0.2.2", "y")], ports=[8000, 9000]),
        ],
        SEL,
    )
    assert [(e.name, e.url, e.role) for e in view.serving] == [
        ("fd00::7", "http://[fd00::7]:8000", "decode"),
        ("p0", "http://10.0.1.1:8000", "prefill"),
    ]
    # with --kube-port, a slice of several ports is usable
    fixed = KubeSelection(namespace="ns", selector="s", port=9000)
    view = endpoints_from_slices([_slice("two-ports", [_ep("10.0.2.2", "y")], [8000, 9000])], fixed)
    assert [e.url for e in view.serving] == ["http://10.0.2.2:9000"]


def test_a_draining_pod_listed_ready_in_another_slice_serves() -> None:
    view = endpoints_from_slices(
        [
            _slice("a", [_ep("10.0.0.9", "p", ready=False, serving=True, terminating=True)]),
            _slice("b", [_ep("10.0.0.9", "p")]),
        ],
        SEL,
    )
    assert [e.name for e in view.serving] == ["p"] and view.draining == []


def test_kube_service_flag() -> None:
    args = parser().parse_args(["--kube-service", "llm", "--kube-namespace", "ns"])
    _, source, _ = build(args)
    assert isinstance(source, KubeEndpoints)
    sel = source.selection
    assert (sel.discovery, sel.selector, sel.port) == (
        "endpointslices",
        "kubernetes.io/service-name=llm",
        None,
    )
    args = parser().parse_args(
        [
            "--kube-selector",
            "app=llm",
            "--kube-discovery",
            "endpointslices",
            "--kube-namespace",
            "ns",
            "--kube-port",
            "9000",
        ]
    )
    _, source, _ = build(args)
    assert isinstance(source, KubeEndpoints)
    assert (source.selection.discovery, source.selection.port) == ("endpointslices", 9000)
    for bad, match in [
        (["--kube-service", "Not_A_Name", "--kube-namespace", "ns"], "not a Service name"),
        (["--kube-service", "llm"], "--kube-service needs --kube-namespace"),
        (["--kube-service", "llm", "--kube-selector", "a=b", "--kube-namespace", "n"], "exclude"),
        (
            ["--kube-service", "llm", "--kube-discovery", "pods", "--kube-namespace", "n"],
            "not pods",
        ),
    ]:
        with pytest.raises(EndpointError, match=match):
            build(parser().parse_args(bad))


def slice_manifest(name: str, endpoints: list[dict[str, Any]], role: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": "engines",
                # not the EndpointSlice controller's: it leaves these slices alone
                "endpointslice.kubernetes.io/managed-by": "wharf-tests",
                "llm-d.ai/role": role,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8123, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def endpoint(ip: str, pod: str, ready: bool, terminating: bool = False) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready or terminating, "terminating": terminating},
        "targetRef": {"kind": "Pod", "name": pod},
    }


@pytest.mark.kube
async def test_the_endpoint_set_follows_the_services_slices(
    kube: Kube, kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    ns = kube_namespace
    await kube.apply(
        slice_manifest("engines-p", [endpoint("10.9.0.1", "pre-0", ready=True)], "prefill"), ns
    )
    await kube.apply(
        slice_manifest(
            "engines-d",
            [endpoint("10.9.0.2", "dec-0", ready=True), endpoint("10.9.0.3", "dec-1", False)],
            "decode",
        ),
        ns,
    )
    # another Service's slice: not ours
    other = slice_manifest("others", [endpoint("10.9.0.9", "x", ready=True)], "decode")
    other["metadata"]["labels"]["kubernetes.io/service-name"] = "others"
    await kube.apply(other, ns)
    lists: list[list[Endpoint]] = []
    source = KubeEndpoints(
        KubeSelection(
            namespace=ns,
            selector="kubernetes.io/service-name=engines",
            kubeconfig=kube_cluster.kubeconfig,
            discovery="endpointslices",
        )
    )

    def names() -> dict[str, str]:
        return {e.name: e.role for e in lists[-1]} if lists else {}

    task = asyncio.create_task(source.run(lists.append))
    try:
        await until(
            lambda: names() == {"pre-0": "prefill", "dec-0": "decode"},
            "ready endpoints",
            timeout_s=60,
        )
        assert {e.url for e in lists[-1]} == {"http://10.9.0.1:8123", "http://10.9.0.2:8123"}
        # dec-1 turns ready; dec-0 starts terminating: no new requests go to it
        await kube.apply(
            slice_manifest(
                "engines-d",
                [
                    endpoint("10.9.0.2", "dec-0", ready=False, terminating=True),
                    endpoint("10.9.0.3", "dec-1", ready=True),
                ],
                "decode",
            ),
            ns,
        )
        await until(
            lambda: names() == {"pre-0": "prefill", "dec-1": "decode"},
            "the terminating endpoint to leave the set",
            timeout_s=60,
        )
        await kube.delete("discovery.k8s.io/v1", "EndpointSlice", "engines-p", ns)
        await until(
            lambda: names() == {"dec-1": "decode"},
            "the deleted slice's endpoints to go",
            timeout_s=60,
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_endpoint_that_leaves_the_set_finishes_its_in_flight_request(
    start_engine: Start, start_gateway: Start
) -> None:
    """What a terminating endpoint gets: the source drops it from the set (as the slice watch
    does); its request in flight still answers, and new requests go elsewhere."""
    hold = asyncio.Event()
    leaving, _, leaving_ep = await start_engine("leaving", hold=hold)
    staying, _, staying_ep = await start_engine("staying")
    gateway, gw = await start_gateway([leaving_ep], max_attempts=1)
    body = {"model": "tiny", "prompt": "hello", "max_tokens": 2}
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        in_flight = asyncio.create_task(client.post("/v1/completions", json=body))
        await until(lambda: leaving.active == 1, "the request to reach the leaving engine")
        gateway.pool.update([staying_ep])
        assert set(gateway.pool.pods) == {"staying"}
        after = await client.post("/v1/completions", json=body)
        assert after.status_code == 200 and len(staying.seen) == 1
        hold.set()
        answer = await in_flight
    assert answer.status_code == 200, answer.text
    assert len(leaving.seen) == 1
