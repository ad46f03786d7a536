"""The local runtime's daemon: the runtime, the ingress and the control API in one process.

Started in the background by the CLI (`python -m wharf_local.daemon`). The control API listens
on a unix socket under `$WHARF_HOME`; the applied manifests are kept in `state.json` and applied
again when the daemon starts, so a restarted daemon serves what was up before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wharf_datapath.sniffing import H2Sniffer, protocol_for
from wharf_local import __version__
from wharf_local.home import Home
from wharf_local.ingress import GrpcRouter, HttpIngress
from wharf_local.runtime import LocalRuntime
from wharf_local.settings import Settings
from wharf_protocol.limits import head_timeout_s

log = logging.getLogger("wharf.daemon")


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
        body = await request.json()
        results = runtime.apply(body["documents"])
        save()
        return JSONResponse({"results": [r.__dict__ for r in results]})

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
            Route("/shutdown", shutdown, methods=["POST"]),
        ]
    )


async def serve(home: Home, settings: Settings) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
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
    router = GrpcRouter(runtime)
    # the gRPC port: h2c connections, routed by :authority (or host metadata)
    grpc_listener = await loop.create_server(
        lambda: H2Sniffer(router.port_for), settings.ingress_host, settings.ingress_grpc_port
    )
    http = _Server(
        uvicorn.Config(
            ingress,
            host=settings.ingress_host,
            port=settings.ingress_port,
            loop="none",
            # gRPC (h2c) on the HTTP port too: piped to the gRPC ingress
            http=protocol_for(router.port_for, head_timeout_s()),
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=75,
            # the model server's own Date and Server headers pass through
            server_header=False,
            date_header=False,
        )
    )
    home.socket.unlink(missing_ok=True)
    control = _Server(
        uvicorn.Config(
            control_app(runtime, stop, home),
            uds=str(home.socket),
            loop="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
    )
    tasks = [asyncio.create_task(http.serve()), asyncio.create_task(control.serve())]
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
    home.socket.unlink(missing_ok=True)
    home.pid_file.unlink(missing_ok=True)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    home = Home.from_env()
    settings = Settings.from_env()
    try:
        import uvloop
    except ImportError:  # uvloop is an optional speed-up
        asyncio.run(serve(home, settings))
    else:
        uvloop.run(serve(home, settings))


if __name__ == "__main__":
    main()
