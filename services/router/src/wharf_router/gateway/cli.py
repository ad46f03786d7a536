"""`wharf-router gateway`: the OpenAI LLM gateway. Flags win over the config file's settings."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

from wharf_datapath import tracing as tr
from wharf_router.gateway.config import ConfigError, GatewayConfig, apply_settings, load_config_file
from wharf_router.gateway.endpoints import (
    EndpointError,
    EndpointSource,
    StaticEndpoints,
    check_unique,
    load_endpoints_file,
    parse_endpoint_flag,
    parse_endpoints_document,
)
from wharf_router.gateway.limits import ApiKeys, KeysError, load_keys_file
from wharf_router.gateway.peer_link import (
    PeerConfigError,
    PeerSettings,
    load_token,
    parse_listen,
    parse_peer_url,
)
from wharf_router.gateway.peers import MAX_PEERS, PEER_NAME
from wharf_router.gateway.scheduling import POLICIES, parse_weights

DEFAULT_KUBE_PORT = 8000
# Envoy keeps idle upstream connections an hour, Go's and Python's pools 90 s and 5 s; a server that
# closes first races the client's next request on that connection (the client sees a reset)
KEEP_ALIVE_S = 75
# a Service name is an RFC 1035 label
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wharf-router gateway",
        description="OpenAI-compatible LLM gateway: routes by load, prefix cache and session; prefill/decode hand-off.",
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--config", type=Path, help="YAML/JSON file of settings (flags win over it)")
    src = p.add_argument_group("endpoints (a static list, or Kubernetes pods)")
    src.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="URL[=ROLE]",
        help="an engine's base URL, role prefill|decode|both (default both); repeatable",
    )
    src.add_argument("--endpoints-file", type=Path, help="YAML/JSON list of {url, role, name}")
    src.add_argument(
        "--kube-selector", help="label selector of the engine pods (or of the EndpointSlices)"
    )
    src.add_argument("--kube-namespace", help="namespace of the engine pods or Service")
    src.add_argument(
        "--kube-discovery",
        choices=("pods", "endpointslices"),
        default=None,
        help="what --kube-selector selects: pods (default) or EndpointSlices",
    )
    src.add_argument(
        "--kube-service",
        help="a Service whose EndpointSlices list the engines (implies endpointslices)",
    )
    src.add_argument(
        "--role-label",
        default=None,
        help="pod (or EndpointSlice) label holding the role (default llm-d.ai/role)",
    )
    src.add_argument(
        "--kube-port",
        type=int,
        default=None,
        help="the engines' HTTP port (default: 8000 for pods, the slice's port for slices)",
    )
    src.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, then ~/.kube/config)"
    )
    sch = p.add_argument_group("scheduling")
    sch.add_argument("--policy", choices=POLICIES, default=None)
    sch.add_argument(
        "--weights", default=None, help="e.g. prefix=6,pending=1,queue=1,active=0,kv=0.25,session=1"
    )
    sch.add_argument(
        "--session-header", default=None, help="header naming a session (default x-session-id)"
    )
    sch.add_argument(
        "--scrape-interval", type=float, default=None, help="seconds between /metrics scrapes"
    )
    sch.add_argument(
        "--lone-scrape-interval",
        type=float,
        default=None,
        help="seconds between /metrics scrapes of a pod with no other of its kind (default 1)",
    )
    req = p.add_argument_group("requests")
    req.add_argument(
        "--request-timeout", type=float, default=None, help="seconds per request (default 600)"
    )
    req.add_argument(
        "--prefill-timeout", type=float, default=None, help="seconds per prefill (default 60)"
    )
    req.add_argument(
        "--pd-warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hand each prefill/decode pair off once in the background before requests use it "
        "(default on; see docs/router.md)",
    )
    req.add_argument(
        "--max-attempts", type=int, default=None, help="pods tried per request (default 3)"
    )
    req.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=KEEP_ALIVE_S,
        metavar="SECONDS",
        help=f"how long an idle client connection is kept open (default {KEEP_ALIVE_S:g}: longer "
        "than most client pools keep one; set it above the idle timeout of the proxy in front, "
        "so it never sends a request on a connection the gateway is closing)",
    )
    req.add_argument(
        "--api-keys-file", type=Path, help="YAML/JSON list of {name, key, tokens_per_minute}"
    )
    peer = p.add_argument_group(
        "replicas (peer exchange: replicas share placements and load; see docs/router.md)"
    )
    peer.add_argument(
        "--peer-listen", metavar="HOST:PORT", help="where peers' messages are taken (not --port)"
    )
    peer.add_argument(
        "--peer", action="append", default=[], metavar="URL",
        help="a peer replica's --peer-listen address as http://HOST:PORT; repeatable",
    )  # fmt: skip
    peer.add_argument(
        "--peer-kube-selector",
        help="label selector of the gateway's own pods: each is a peer (needs --kube-namespace)",
    )
    peer.add_argument(
        "--peer-token-file", type=Path, help="the shared secret, one line (required with peers)"
    )
    peer.add_argument("--peer-name", help="this replica's name (default: host name and pid)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def kube_source(args: argparse.Namespace, kube_doc: dict[str, Any]) -> EndpointSource | None:
    """The Kubernetes endpoint source the flags (or the file's `kube:`) name, if any."""
    selector = args.kube_selector or kube_doc.get("selector")
    service = args.kube_service or kube_doc.get("service")
    discovery = args.kube_discovery or kube_doc.get("discovery", "pods")
    if not selector and not service:
        return None
    from wharf_router.gateway.kube_endpoints import SERVICE_NAME_LABEL, KubeEndpoints, KubeSelection

    if service:
        if selector:
            raise EndpointError("--kube-service and --kube-selector exclude each other")
        if not isinstance(service, str) or not _DNS_LABEL.match(service):
            raise EndpointError(f"--kube-service {service!r} is not a Service name")
        if args.kube_discovery == "pods":
            raise EndpointError("--kube-service watches EndpointSlices, not pods")
        selector, discovery = f"{SERVICE_NAME_LABEL}={service}", "endpointslices"
    if discovery not in ("pods", "endpointslices"):
        raise EndpointError(f"kube.discovery {discovery!r}: pods or endpointslices")
    namespace = args.kube_namespace or kube_doc.get("namespace")
    if not namespace:
        raise EndpointError(
            f"{'--kube-service' if service else '--kube-selector'} needs --kube-namespace"
        )
    port = args.kube_port or kube_doc.get("port")
    if port is None and discovery == "pods":
        port = DEFAULT_KUBE_PORT
    return KubeEndpoints(
        KubeSelection(
            namespace=namespace,
            selector=str(selector),
            role_label=args.role_label or kube_doc.get("role_label", "llm-d.ai/role"),
            port=int(port) if port is not None else None,
            kubeconfig=args.kubeconfig,
            discovery=discovery,
        )
    )


def peer_settings(args: argparse.Namespace) -> PeerSettings | None:
    """The peer exchange the flags describe; None when there is none."""
    if not (args.peer_listen or args.peer or args.peer_kube_selector):
        if args.peer_token_file or args.peer_name:
            raise PeerConfigError("--peer-token-file/--peer-name need --peer-listen or --peer")
        return None
    if args.peer_token_file is None:
        raise PeerConfigError("the peer exchange needs --peer-token-file (a shared secret)")
    listen = parse_listen(args.peer_listen) if args.peer_listen else None
    if listen is not None and listen[1] == args.port:
        raise PeerConfigError("--peer-listen must not be the public --port")
    peers = tuple(dict.fromkeys(parse_peer_url(u) for u in args.peer))
    if len(peers) > MAX_PEERS:
        raise PeerConfigError(f"--peer: at most {MAX_PEERS} peers")
    name = args.peer_name or ""
    if name and not PEER_NAME.match(name):
        raise PeerConfigError(f"--peer-name {name!r}: letters, digits and ._:@/- only")
    source: EndpointSource | None = None
    if args.peer_kube_selector:
        if not args.kube_namespace:
            raise PeerConfigError("--peer-kube-selector needs --kube-namespace")
        if listen is None:
            raise PeerConfigError("--peer-kube-selector needs --peer-listen (its port is theirs)")
        from wharf_router.gateway.kube_endpoints import KubeEndpoints, KubeSelection

        source = KubeEndpoints(
            KubeSelection(
                namespace=args.kube_namespace,
                selector=args.peer_kube_selector,
                port=listen[1],
                kubeconfig=args.kubeconfig,
                discovery="pods",
            )
        )
    return PeerSettings(
        listen=listen,
        peers=peers,
        token=load_token(args.peer_token_file),
        name=name,
        source=source,
    )


def build(args: argparse.Namespace) -> tuple[GatewayConfig, EndpointSource, ApiKeys | None]:
    """The settings, endpoint source and keys the flags and config file describe."""
    doc: dict[str, Any] = load_config_file(args.config) if args.config else {}
    where = f"--config {args.config}"
    endpoints_doc = doc.pop("endpoints", None)
    kube_doc = doc.pop("kube", None) or {}
    keys_path = doc.pop("api_keys_file", None) or doc.pop("api-keys-file", None)
    config = apply_settings(GatewayConfig(), doc, where)
    flags: dict[str, Any] = {}
    for name in (
        "policy",
        "session_header",
        "request_timeout",
        "prefill_timeout",
        "max_attempts",
        "pd_warmup",
    ):
        if getattr(args, name) is not None:
            flags[name] = getattr(args, name)
    probing = {
        name: getattr(args, name)
        for name in ("scrape_interval", "lone_scrape_interval")
        if getattr(args, name) is not None
    }
    if probing:
        flags["probing"] = probing
    config = apply_settings(config, flags, "flags")
    if args.weights is not None:
        from dataclasses import replace

        config = replace(config, weights=parse_weights(args.weights, config.weights))

    static = [parse_endpoint_flag(v) for v in args.endpoint]
    if args.endpoints_file is not None:
        static += load_endpoints_file(args.endpoints_file)
    if endpoints_doc is not None:
        static += parse_endpoints_document(endpoints_doc, f"{where}: endpoints")
    source: EndpointSource
    kube = kube_source(args, kube_doc)
    if kube is not None:
        if static:
            raise EndpointError("--kube-selector and static endpoints exclude each other: give one")
        source = kube
    else:
        if not static:
            raise EndpointError(
                "no endpoints: give --endpoint, --endpoints-file, --kube-selector or --kube-service"
            )
        source = StaticEndpoints(check_unique(static, "endpoints"))
    keys_file = args.api_keys_file or (Path(keys_path) if keys_path else None)
    keys = load_keys_file(keys_file) if keys_file is not None else None
    return config, source, keys


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.keep_alive_timeout < 1:
            raise ValueError(
                f"--keep-alive-timeout must be at least 1 (got {args.keep_alive_timeout})"
            )
        config, source, keys = build(args)
        peers = peer_settings(args)
        # the clients' heads and bodies bounded as on every hop (wharf_protocol.limits)
        from wharf_datapath.http_head import head_limited
        from wharf_protocol.limits import head_timeout_s, min_body_rate

        protocol = head_limited(head_timeout_s=head_timeout_s(), min_body_rate=min_body_rate())
        tracing = tr.setup("wharf-gateway")
    except (ConfigError, EndpointError, KeysError, PeerConfigError, ValueError) as exc:
        raise SystemExit(f"wharf-router gateway: {exc}") from None
    import uvicorn

    from wharf_router.gateway.app import Gateway

    app: Any
    if tracing is None:
        app = Gateway(config, source, keys, peers)
    else:
        from wharf_router.gateway.traced import TracedGateway, describe_request

        app = tr.traced_app(
            TracedGateway(tracing, config, source, keys, peers), tracing, describe_request
        )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=protocol,
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        timeout_keep_alive=args.keep_alive_timeout,
        # each of these costs every request something; the gateway needs none of them
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    if tracing is not None:
        tracing.shutdown()  # the spans of the last requests
    return 0
