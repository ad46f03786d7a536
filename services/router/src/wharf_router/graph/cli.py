"""`wharf-router [--graph-json JSON | --graph-file PATH] [--port N] ...`: KServe's router flags
(`--graph-json`, port 8080, `PROPAGATE_HEADERS`) plus Wharf's (a manifest file, the address,
how `serviceName` steps resolve, the drain period)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import uvicorn

from wharf_api.resources.inference_graph import InferenceGraphSpec
from wharf_datapath import tracing as tr
from wharf_datapath.http_head import head_limited
from wharf_protocol.limits import head_timeout_s, max_message_bytes, min_body_rate
from wharf_router.common.lifecycle import Readiness, serve
from wharf_router.graph.app import GraphApp, describe_request
from wharf_router.graph.client import HttpCaller, TracedHttpCaller
from wharf_router.graph.decisions import compile_patterns
from wharf_router.graph.engine import GraphEngine
from wharf_router.graph.resolve import Resolution, resolve_services
from wharf_router.graph.spec import GraphError, load_graph_file, parse_graph_json

log = logging.getLogger("wharf.router.graph")

PORT = 8080
# KServe's constants: RouterTimeoutsServerRead, RouterTimeoutServerWrite, RouterTimeoutServerIdle
SERVER_READ_S = 60
SERVER_WRITE_S = 60
SERVER_IDLE_S = 180
DRAIN_S = 30.0


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="wharf-router", description="The InferenceGraph router (KServe's router interface)."
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--graph-json", help="the InferenceGraph spec as JSON (KServe's flag)")
    source.add_argument(
        "--graph-file", type=Path, help="an InferenceGraph manifest (YAML or JSON), or its spec"
    )
    p.add_argument("--port", type=int, default=PORT, help="HTTP port (default 8080)")
    p.add_argument("--host", default=env("WHARF_BIND_HOST", "0.0.0.0"), help="address to listen on")
    p.add_argument(
        "--namespace",
        default=env("WHARF_ROUTER_NAMESPACE") or env("POD_NAMESPACE") or "default",
        help="namespace of the graph's serviceName steps",
    )
    p.add_argument(
        "--service-resolution",
        choices=("cluster", "local"),
        default=env("WHARF_ROUTER_RESOLUTION", "cluster"),
        help="serviceName -> in-cluster URL (cluster) or the `wharf up` ingress path (local)",
    )
    p.add_argument(
        "--ingress",
        default=env("WHARF_ROUTER_INGRESS", "http://127.0.0.1:8080"),
        help="the local ingress, for --service-resolution=local",
    )
    p.add_argument(
        "--service-protocol",
        choices=("v1", "v2"),
        default=env("WHARF_ROUTER_SERVICE_PROTOCOL", "v1"),
        help="predict path appended to a serviceName step's URL",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=float(env("WHARF_ROUTER_DRAIN_SECONDS", str(DRAIN_S))),
        help="after SIGTERM, how long /readyz answers 503 before the server stops",
    )
    p.add_argument("--log-level", default=env("WHARF_LOG_LEVEL", "info"))
    return p


def load_spec(args: argparse.Namespace) -> InferenceGraphSpec:
    spec = (
        parse_graph_json(args.graph_json)
        if args.graph_json is not None
        else load_graph_file(args.graph_file)
    )
    how = Resolution(args.service_resolution, args.namespace, args.ingress, args.service_protocol)
    return resolve_services(spec, how)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        spec = load_spec(args)
        patterns = (
            compile_patterns(os.environ["PROPAGATE_HEADERS"])
            if os.environ.get("PROPAGATE_HEADERS")
            else []
        )
        # the callers' heads and bodies bounded as on every hop (wharf_protocol.limits)
        protocol = head_limited(head_timeout_s=head_timeout_s(), min_body_rate=min_body_rate())
        max_body_bytes = max_message_bytes()
        tracing = tr.setup("wharf-router")
    except (GraphError, ValueError) as exc:  # TracingConfigError is a ValueError
        log.error("%s", exc)
        return 2
    timeouts = spec.router_timeouts
    read_s = (timeouts.server_read if timeouts else None) or SERVER_READ_S
    write_s = (timeouts.server_write if timeouts else None) or SERVER_WRITE_S
    idle_s = (timeouts.server_idle if timeouts else None) or SERVER_IDLE_S
    client_s = timeouts.service_client if timeouts else None
    timeout = float(client_s) if client_s else None
    caller = HttpCaller(timeout) if tracing is None else TracedHttpCaller(tracing, timeout)
    readiness = Readiness()
    app = GraphApp(
        GraphEngine(spec, caller),
        readiness,
        patterns,
        max_body_bytes=max_body_bytes,
        read_timeout_s=float(read_s),
        write_timeout_s=float(write_s),
    )
    config = uvicorn.Config(
        app if tracing is None else tr.traced_app(app, tracing, describe_request),
        host=args.host,
        port=args.port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=idle_s,
        loop="uvloop",
        http=protocol,
    )
    log.info("InferenceGraph router on %s:%s, nodes %s", args.host, args.port, list(spec.nodes))
    asyncio.run(serve(config, readiness, args.drain_seconds, caller.aclose))
    if tracing is not None:
        tracing.shutdown()  # the spans of the last requests
    return 0
