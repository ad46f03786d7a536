"""``ModelServer`` and its argparse ``parser``, shaped like ``kserve.model_server``.

Runtimes and custom servers extend the flags with ``argparse.ArgumentParser(parents=[parser])``;
``ModelServer()`` with no arguments takes its settings from the command line, as KServe's does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from wharf_datapath import tracing
from wharf_model_server import executor
from wharf_model_server import workers as worker_processes
from wharf_model_server.batching import BatchConfig
from wharf_model_server.dataplane import DataPlane
from wharf_model_server.errors import NoModelReady
from wharf_model_server.logging import configure_logging as setup_logging
from wharf_model_server.model import BaseKServeModel, Model
from wharf_model_server.model_repository import ModelRepository
from wharf_model_server.payload_logger import LoggerConfig, LogMode, PayloadLogger
from wharf_model_server.server_runtime import RestServer
from wharf_protocol.limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES_ENV,
    max_message_bytes,
)

logger = logging.getLogger("wharf.server")

DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 8081
_LIMIT_DEFAULT = f"${MAX_MESSAGE_BYTES_ENV}, else {DEFAULT_MAX_MESSAGE_BYTES} (64 MiB)"


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text:
            return text
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, formatter_class=HelpFormatter)
    # -- KServe's model server flags, same names and defaults --------------------------------
    p.add_argument("--http_port", default=DEFAULT_HTTP_PORT, type=int, help="REST port")
    p.add_argument("--grpc_port", default=DEFAULT_GRPC_PORT, type=int, help="gRPC port")
    p.add_argument(
        "--workers", default=1, type=int,
        help="server processes sharing the REST and gRPC ports, each loading the models itself",
    )  # fmt: skip
    p.add_argument(
        "--max_threads", default=4, type=int, help="KServe's gRPC thread pool size (accepted)"
    )
    p.add_argument(
        "--max_asyncio_workers",
        default=None,
        type=int,
        help="threads running sync model code (default: one per usable cpu)",
    )
    p.add_argument("--enable_grpc", default=True, type=_bool, help="serve gRPC")
    p.add_argument("--enable_docs_url", default=False, type=_bool, help="serve /docs")
    p.add_argument(
        "--enable_latency_logging", default=False, type=_bool, help="one latency line per request"
    )
    p.add_argument(
        "--configure_logging", default=True, type=_bool, help="set up the server's log handlers"
    )
    p.add_argument(
        "--log_config_file", default=None, type=str, help="a logging config file (yaml or json)"
    )
    p.add_argument(
        "--access_log_format", default=None, type=str, help="KServe's access log format (accepted)"
    )
    p.add_argument(
        "--event-loop", "--event_loop", dest="event_loop", default="auto",
        choices=["auto", "asyncio", "uvloop"], help="the asyncio event loop (auto: uvloop if installed)",
    )  # fmt: skip
    p.add_argument(
        "--timeout-keep-alive", "--timeout_keep_alive", dest="timeout_keep_alive", default=65,
        type=int, help="seconds an idle HTTP connection stays open",
    )  # fmt: skip
    p.add_argument("--model_name", default="model", type=str, help="name in the URL paths")
    p.add_argument(
        "--predictor_host", default=None, type=str,
        help="transformer/explainer: the predictor to forward to (host:port)",
    )  # fmt: skip
    p.add_argument(
        "--predictor_protocol", "--protocol", dest="predictor_protocol", default="v1",
        choices=["v1", "v2", "grpc-v2"], help="the protocol spoken to the predictor",
    )  # fmt: skip
    p.add_argument(
        "--predictor_use_ssl", default=False, type=_bool, help="https/TLS to the predictor"
    )
    p.add_argument(
        "--predictor_request_timeout_seconds", default=600, type=float,
        help="timeout of a request to the predictor",
    )  # fmt: skip
    p.add_argument(
        "--predictor_request_retries", default=0, type=int, help="retries of a predictor request"
    )
    p.add_argument(
        "--enable_predictor_health_check", action="store_true", default=False,
        help="ready only while the predictor serves the model",
    )  # fmt: skip
    p.add_argument(
        "--grpc_max_send_message_length", default=None, type=int,
        help=f"largest gRPC message sent, bytes (default: {_LIMIT_DEFAULT})",
    )  # fmt: skip
    p.add_argument(
        "--grpc_max_receive_message_length", default=None, type=int,
        help=f"largest gRPC message received, bytes (default: {_LIMIT_DEFAULT})",
    )  # fmt: skip
    p.add_argument(
        "--max_request_body_bytes", "--max-request-body-bytes", dest="max_request_body_bytes",
        default=None, type=int,
        help=f"largest REST request body, bytes; 413 above it (default: {_LIMIT_DEFAULT})",
    )  # fmt: skip
    # -- batching (KServe's agent flags, in-process here) ------------------------------------
    p.add_argument(
        "--enable_batcher", "--enable-batcher", dest="enable_batcher", default=False, type=_bool,
        nargs="?", const=True, help="merge concurrent requests (V1, V2, gRPC)",
    )  # fmt: skip
    p.add_argument(
        "--max_batchsize", "--max-batchsize", "--max_batch_size", dest="max_batchsize",
        default=32, type=int, help="rows per batch",
    )  # fmt: skip
    p.add_argument(
        "--max_latency", "--max-latency", dest="max_latency", default=5000.0, type=float,
        help="milliseconds the first request of a batch may wait",
    )  # fmt: skip
    # -- payload logging (KServe's agent flags, in-process here) -----------------------------
    p.add_argument(
        "--log_url", "--log-url", dest="log_url", default=None, type=str,
        help="where request/response CloudEvents are sent (off when unset)",
    )  # fmt: skip
    p.add_argument(
        "--log_mode", "--log-mode", dest="log_mode", default="all",
        choices=[m.value for m in LogMode], help="which payloads are logged",
    )  # fmt: skip
    p.add_argument(
        "--log_queue_size", dest="log_queue_size", default=100, type=int,
        help="payload events held before new ones are dropped",
    )  # fmt: skip
    p.add_argument(
        "--log_workers", dest="log_workers", default=2, type=int, help="payload log senders"
    )
    p.add_argument(
        "--source_uri", "--source-uri", dest="source_uri", default=None, type=str,
        help="CloudEvent source (default: this server's URL)",
    )  # fmt: skip
    p.add_argument(
        "--inference_service", "--inference-service", dest="inference_service",
        default=os.environ.get("INFERENCE_SERVICE_NAME", ""),
        help="CloudEvent inferenceservicename ($INFERENCE_SERVICE_NAME)",
    )  # fmt: skip
    p.add_argument(
        "--namespace", default=os.environ.get("POD_NAMESPACE", ""),
        help="CloudEvent namespace ($POD_NAMESPACE)",
    )  # fmt: skip
    p.add_argument("--component", default="predictor", help="CloudEvent component")
    p.add_argument(
        "--graceful_shutdown_timeout", default=30.0, type=float,
        help="seconds to finish in-flight requests after SIGTERM",
    )  # fmt: skip
    return p


parser = build_parser()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args, _ = parser.parse_known_args(argv)
    return args


class ModelServer:
    def __init__(
        self,
        http_port: int | None = None,
        grpc_port: int | None = None,
        workers: int | None = None,
        max_threads: int | None = None,
        max_asyncio_workers: int | None = None,
        registered_models: ModelRepository | None = None,
        enable_grpc: bool | None = None,
        enable_docs_url: bool | None = None,
        enable_latency_logging: bool | None = None,
        configure_logging: bool | None = None,
        batch_config: BatchConfig | None = None,
        logger_config: LoggerConfig | None = None,
        args: argparse.Namespace | None = None,
        host: str | None = None,
        max_request_body_bytes: int | None = None,
    ) -> None:
        self.args = args if args is not None else parse_args(sys.argv[1:])
        a = self.args
        self.http_port = a.http_port if http_port is None else http_port
        self.grpc_port = a.grpc_port if grpc_port is None else grpc_port
        self.workers = a.workers if workers is None else workers
        self.max_threads = a.max_threads if max_threads is None else max_threads
        self.max_asyncio_workers = (
            a.max_asyncio_workers if max_asyncio_workers is None else max_asyncio_workers
        )
        self.enable_grpc = a.enable_grpc if enable_grpc is None else enable_grpc
        self.enable_docs_url = a.enable_docs_url if enable_docs_url is None else enable_docs_url
        self.enable_latency_logging = (
            a.enable_latency_logging if enable_latency_logging is None else enable_latency_logging
        )
        should_configure = a.configure_logging if configure_logging is None else configure_logging
        if should_configure:
            setup_logging(a.log_config_file)
        if batch_config is None and a.enable_batcher:
            batch_config = BatchConfig(a.max_batchsize, a.max_latency)
        if logger_config is None and a.log_url:
            logger_config = LoggerConfig(
                url=a.log_url,
                mode=LogMode(a.log_mode),
                queue_size=a.log_queue_size,
                workers=a.log_workers,
                source_uri=a.source_uri or f"http://localhost:{self.http_port}/",
                inference_service=a.inference_service,
                namespace=a.namespace,
                component=a.component,
            )
        # All interfaces, as a pod needs; `wharf up` sets WHARF_BIND_HOST=127.0.0.1 so a model
        # on a laptop is reachable only through the local ingress.
        self.host = host or os.environ.get("WHARF_BIND_HOST", "0.0.0.0")
        # One limit for REST bodies and gRPC messages (every hop reads the same variable);
        # KServe's gRPC flags and ours still set each one.
        limit = max_message_bytes()
        self.max_request_body_bytes: int = (
            max_request_body_bytes or a.max_request_body_bytes or limit
        )
        self.grpc_max_send_message_length: int = a.grpc_max_send_message_length or limit
        self.grpc_max_receive_message_length: int = a.grpc_max_receive_message_length or limit
        self.registered_models = registered_models or ModelRepository()
        self.payload_logger = PayloadLogger(logger_config) if logger_config else None
        self.dataplane = DataPlane(self.registered_models, batch_config, self.payload_logger)
        self._rest: RestServer | None = None
        self._grpc: Any = None
        self._tracing: tracing.Tracing | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False
        # --workers N: this process is one of N that share the ports (see `workers`).
        self.reuse_port = worker_processes.is_worker()

    # -- registering models ------------------------------------------------------------------

    def register_model(self, model: BaseKServeModel, name: str | None = None) -> None:
        if not model.name:
            raise ValueError("a model needs a name to be registered")
        if isinstance(model, Model):
            model.enable_latency_logging = self.enable_latency_logging
        self.registered_models.update(model, name)
        logger.info("registered model %s", name or model.name)

    def _register_all(self, models: Sequence[BaseKServeModel]) -> None:
        for model in models:
            if model.ready:
                self.register_model(model)
                model.start()
        if models and not any(m.ready for m in models):
            raise NoModelReady([m.name for m in models])

    # -- running -----------------------------------------------------------------------------

    def start(self, models: Sequence[BaseKServeModel] = ()) -> None:
        """Registers the ready models and serves until SIGTERM/SIGINT (blocking).

        With ``workers`` > 1 this process serves nothing: it runs its own command line again in
        that many worker processes (each loads its models itself) and supervises them, then
        exits with their status."""
        if self.workers > 1 and not worker_processes.is_worker():
            grace = self.args.graceful_shutdown_timeout
            sys.exit(
                worker_processes.supervise(worker_processes.own_command(), self.workers, grace)
            )
        self._register_all(models)
        loop_kind = self.args.event_loop
        if loop_kind in ("auto", "uvloop"):
            try:
                import uvloop

                uvloop.run(self._serve())
                return
            except ImportError:
                if loop_kind == "uvloop":
                    raise
        asyncio.run(self._serve())

    async def start_async(self, models: Sequence[BaseKServeModel] = ()) -> None:
        """Like :meth:`start`, for callers that own the event loop (tests, embedding)."""
        self._register_all(models)
        await self._serve()

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError, ValueError):
                return  # not the main thread: whoever runs us stops us with stop()

    def stop(self) -> None:
        """Begins a graceful shutdown: stop accepting, finish in-flight requests, exit."""
        if self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        executor.configure(self.max_asyncio_workers)
        self._install_signal_handlers(self._loop)
        if self.payload_logger is not None:
            await self.payload_logger.start()
        for model in list(self.registered_models.get_models().values()):
            if model.engine:
                await model.start_engine()

        from wharf_model_server.rest.app import build_rest_app

        asgi_app, self.fastapi_app = build_rest_app(
            self.dataplane, self.enable_docs_url, self.max_request_body_bytes
        )
        self._tracing = tracing.setup("wharf-model-server")
        if self._tracing is not None:
            # traced only when OTEL_* asks for it: otherwise uvicorn calls the app itself
            from wharf_model_server.rest.fast_path import describe_request

            asgi_app = tracing.traced_app(asgi_app, self._tracing, describe_request)
        self._rest = RestServer(
            asgi_app,
            host=self.host,
            port=self.http_port,
            timeout_keep_alive=self.args.timeout_keep_alive,
            graceful_timeout=self.args.graceful_shutdown_timeout,
            reuse_port=self.reuse_port,
        )
        if self.enable_grpc:
            from wharf_model_server.grpc_server import build_grpc_server

            self._grpc = build_grpc_server(
                self.dataplane,
                self.grpc_port,
                self.grpc_max_send_message_length,
                self.grpc_max_receive_message_length,
                host="[::]" if self.host == "0.0.0.0" else self.host,
                reuse_port=self.reuse_port,
                tracing=self._tracing,
            )
            await self._grpc.start()
        rest_task = asyncio.create_task(self._rest.serve())
        await self._rest.wait_started(rest_task)
        # Models, frameworks and modules loaded so far live as long as the server: moving them
        # out of the collector's reach keeps full collections (and the tail latency they add
        # under load) short.
        gc.freeze()
        self.started = True
        logger.info(
            "serving REST on %s:%s%s", self.host, self.http_port,
            f", gRPC on {self.grpc_port}" if self.enable_grpc else "",
        )  # fmt: skip
        stop_task = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({rest_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        await self._shutdown(rest_task)
        stop_task.cancel()

    async def _shutdown(self, rest_task: asyncio.Task[None]) -> None:
        logger.info("shutting down: no new requests, finishing the in-flight ones")
        self.dataplane.live = False
        assert self._rest is not None
        self._rest.should_exit()
        grace = self.args.graceful_shutdown_timeout
        waits: list[Any] = [rest_task]
        if self._grpc is not None:
            waits.append(self._grpc.stop(grace))
        await asyncio.gather(*waits, return_exceptions=True)
        for name in list(self.registered_models.get_models()):
            model = self.registered_models.get_model(name)
            if model is not None:
                model.stop()
                model.stop_engine()
                if isinstance(model, Model):
                    await model.close_predictor_client()
        if self.payload_logger is not None:
            await self.payload_logger.stop()
        if self._tracing is not None:
            self._tracing.shutdown()  # the spans of the last requests
            self._tracing = None
        self.started = False
        logger.info("stopped")
