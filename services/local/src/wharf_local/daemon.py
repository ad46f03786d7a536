"""The local runtime's daemon: the runtime, the ingress and the control API in one process.

Started in the background by the CLI (`python -m wharf_local.daemon`). The control API listens
on a unix socket under `$WHARF_HOME`; the applied manifests are kept in `state.json` and applied
again when the daemon starts, so a restarted daemon serves what was up before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wharf_api.config import ConfigError
from wharf_datapath.sniffing import H2Sniffer, protocol_for
from wharf_datapath.tracing import REVISION, Tracing, TracingConfigError, traced_app
from wharf_datapath.tracing import setup as setup_tracing
from wharf_local import __version__
from wharf_local.home import Home
from wharf_local.ingress import REVISION_HEADER, GrpcRouter, HttpIngress, describe_request
from wharf_local.objects import get_object, list_objects
from wharf_local.runtime import LocalRuntime
from wharf_local.security import OwnerOnlyProtocol, bind_private_socket, private_dir
from wharf_local.settings import Settings
from wharf_protocol.limits import head_timeout_s, min_body_rate

log = logging.getLogger("wharf.daemon")


GRACEFUL_SHUTDOWN_S = 10


class _Server(uvicorn.Server):
    # the daemon handles signals itself, for all of its servers at once
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def control_app(runtime: LocalRuntime, stop: asyncio.Event, home: Home) -> Starlette:
    def save() -> None:
        tmp = home.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"manifests": list(runtime.applied.values())}, indent=1))
        tmp.replace(home.state_file)

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "version": __version__,
                "pid": os.getpid(),
                "ingress": f"http://{runtime.settings.ingress_host}:{runtime.settings.ingress_port}",
                "grpc": f"{runtime.settings.ingress_host}:{runtime.settings.ingress_grpc_port}",
                "domain": runtime.settings.domain,
            }
        )

    async def apply(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not JSON: {exc}"}, 400)
        problem = _documents_problem(body)
        if problem:
            return JSONResponse({"error": problem}, 400)
        results = runtime.apply(body["documents"])
        save()
        return JSONResponse({"results": [r.__dict__ for r in results]})

    async def objects(request: Request) -> Response:
        kind = request.query_params.get("kind", "InferenceService")
        namespace = request.query_params.get("namespace") or None
        return JSONResponse({"items": list_objects(runtime, kind, namespace)})

    async def one_object(request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        namespace = request.query_params.get("namespace") or "default"
        item = get_object(runtime, kind, namespace, name)
        refused = _refusal(item, request.method, f"{kind} {name!r}", namespace)
        if refused is not None or item is None:
            return refused or JSONResponse({}, 404)
        if request.method == "DELETE":
            await runtime.delete_object(kind, namespace, name)
            save()
            return JSONResponse({"deleted": item["metadata"]})
        return JSONResponse(item)

    async def services(_: Request) -> Response:
        return JSONResponse({"items": [runtime.describe(s) for s in runtime.services.values()]})

    async def service(request: Request) -> Response:
        key = (request.path_params["namespace"], request.path_params["name"])
        svc = runtime.services.get(key)
        if svc is None:
            return JSONResponse({"error": f"InferenceService {key[0]}/{key[1]} not found"}, 404)
        if request.method == "DELETE":
            await runtime.delete(*key)
            save()
            return JSONResponse({"deleted": f"{key[0]}/{key[1]}"})
        return JSONResponse(runtime.describe(svc))

    async def shutdown(_: Request) -> Response:
        # `wharf down` ends the session: the next start begins empty. A daemon that dies
        # otherwise keeps state.json and serves the same services when it starts again.
        home.state_file.unlink(missing_ok=True)
        stop.set()
        return JSONResponse({"stopping": True})

    return Starlette(
        routes=[
            Route("/healthz", health),
            Route("/apply", apply, methods=["POST"]),
            Route("/services", services),
            Route("/services/{namespace}/{name}", service, methods=["GET", "DELETE"]),
            Route("/objects", objects),
            Route("/objects/{kind}/{name}", one_object, methods=["GET", "DELETE"]),
            Route("/shutdown", shutdown, methods=["POST"]),
        ]
    )


def _refusal(
    item: dict[str, Any] | None, method: str, what: str, namespace: str
) -> Response | None:
    """The answer when an object cannot be read or deleted: 404 unknown, 409 built in."""
    if item is None:
        return JSONResponse({"error": f"{what} not found in {namespace}"}, 404)
    if method == "DELETE" and item.get("local", {}).get("builtin"):
        return JSONResponse({"error": f"{what} is built in: it cannot be deleted"}, 409)
    return None


def _documents_problem(body: Any) -> str | None:
    """Why a body posted to /apply is malformed, or None."""
    if not isinstance(body, dict) or "documents" not in body:
        return 'the body must be a JSON object with "documents": [manifest, ...]'
    documents = body["documents"]
    if not isinstance(documents, list):
        return f'"documents" must be a list of manifests, not {type(documents).__name__}'
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict):
            return f"documents[{i}] must be a mapping (a manifest), not {type(doc).__name__}"
        metadata = doc.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return f"documents[{i}].metadata must be a mapping, not {type(metadata).__name__}"
    return None


PORT_IN_USE = 3


def _bind_ingress(host: str, port: int, variable: str) -> socket.socket:
    """A listening TCP socket, or exit with a line naming the port and the variable that moves it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        log.error("port %s on %s %s: set %s to a free port", port, host, why, variable)
        raise SystemExit(PORT_IN_USE) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(home: Home, settings: Settings, tracing: Tracing | None = None) -> None:
    private_dir(home.root)
    # the ports first: a daemon that cannot listen leaves nothing behind
    http_sock = _bind_ingress(settings.ingress_host, settings.ingress_port, "WHARF_INGRESS_PORT")
    try:
        grpc_sock = _bind_ingress(
            settings.ingress_host, settings.ingress_grpc_port, "WHARF_INGRESS_GRPC_PORT"
        )
    except SystemExit:
        http_sock.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runtime = LocalRuntime(home, settings)
    if home.state_file.exists():
        saved = json.loads(home.state_file.read_text()).get("manifests", [])
        for result in runtime.apply(saved):
            if result.error:
                log.warning("saved %s/%s not applied: %s", result.kind, result.name, result.error)
    runtime.start()

    ingress = HttpIngress(runtime)
    # traced only when OTEL_* asks for it: otherwise uvicorn calls the ingress itself
    app = (
        ingress
        if tracing is None
        else traced_app(ingress, tracing, describe_request, (REVISION_HEADER, REVISION))
    )
    router = GrpcRouter(runtime)
    # the gRPC port: h2c connections, routed by :authority (or host metadata)
    grpc_listener = await loop.create_server(lambda: H2Sniffer(router.port_for), sock=grpc_sock)
    http = _Server(
        uvicorn.Config(
            app,
            host=settings.ingress_host,
            port=settings.ingress_port,
            loop="none",
            # gRPC (h2c) on the HTTP port too: piped to the gRPC ingress
            http=protocol_for(router.port_for, head_timeout_s(), min_body_rate()),
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=75,
            # after its processes have stopped, a connection still open does not hold the
            # daemon (and `wharf down`) up for longer than this
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            # the model server's own Date and Server headers pass through
            server_header=False,
            date_header=False,
        )
    )
    control_sock = bind_private_socket(home.socket)
    control = _Server(
        uvicorn.Config(
            control_app(runtime, stop, home),
            http=OwnerOnlyProtocol,
            loop="none",
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            access_log=False,
            log_level="warning",
        )
    )
    tasks = [
        asyncio.create_task(http.serve(sockets=[http_sock])),
        asyncio.create_task(control.serve(sockets=[control_sock])),
    ]
    home.pid_file.write_text(str(os.getpid()))
    log.info(
        "wharf daemon %s: ingress %s:%s", __version__, settings.ingress_host, settings.ingress_port
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception() is not None:
            log.error("a server stopped: %r", task.exception())
    log.info("stopping")
    await runtime.close()
    http.should_exit = True
    control.should_exit = True
    grpc_listener.close()
    await router.aclose()
    await asyncio.gather(*tasks, return_exceptions=True)
    await ingress.aclose()
    if tracing is not None:
        tracing.shutdown()  # the spans of the last requests
    home.socket.unlink(missing_ok=True)
    home.pid_file.unlink(missing_ok=True)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    home = Home.from_env()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        # the CLI shows ERROR lines of a daemon that did not start
        log.error("WHARF_CONFIG: %s", exc)
        raise SystemExit(2) from None
    try:
        tracing = setup_tracing("wharf-ingress")
    except TracingConfigError as exc:
        log.error("tracing: %s", exc)
        raise SystemExit(2) from None
    try:
        import uvloop
    except ImportError:  # uvloop is an optional speed-up
        asyncio.run(serve(home, settings, tracing))
    else:
        uvloop.run(serve(home, settings, tracing))


if __name__ == "__main__":
    main()
