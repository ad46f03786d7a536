"""The transport-free core: readiness, metadata, inference, repository load/unload.

REST and gRPC are thin layers over this class; they decode the wire format, call it, and map
``WharfError`` to their status codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from wharf_model_server import executor
from wharf_model_server.batching import BatchConfig, Batcher, InFlight
from wharf_model_server.errors import ModelMissingError
from wharf_model_server.model import BaseKServeModel, InferenceModel, InferenceVerb
from wharf_model_server.model_repository import ModelRepository
from wharf_model_server.payload_logger import PayloadLogger
from wharf_protocol.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Unsupported,
    WharfError,
)

logger = logging.getLogger("wharf.dataplane")

SERVER_NAME = "wharf"
SERVER_VERSION = "0.1.0"
SERVER_EXTENSIONS = ["model_repository_extension", "binary_tensor_data"]


def as_wharf_error(exc: BaseException) -> WharfError:
    """Maps whatever a model raised to the protocol's error (and so to a status code)."""
    if isinstance(exc, WharfError):
        return exc
    if isinstance(exc, NotImplementedError):
        return Unsupported(str(exc) or "not implemented")
    logger.exception("inference failed", exc_info=exc)
    return InferenceError(f"{type(exc).__name__} : {exc}")


def _check_model_dir_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise InvalidInput(f"invalid model name {name!r}")


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository,
        batch_config: BatchConfig | None = None,
        payload_logger: PayloadLogger | None = None,
    ) -> None:
        self.repository = repository
        self.batch_config = batch_config
        self.payload_logger = payload_logger
        self._batchers: dict[str, tuple[BaseKServeModel, Batcher]] = {}
        # With batching on, the transports count the requests in flight (`enter`/`leave`).
        self.in_flight: InFlight | None = None
        if batch_config is not None:
            self.in_flight = InFlight(batch_config)
            self.in_flight.on_idle = self._send_waiting_batches
        self.live = True
        # How many requests with a large payload are in process at once (see rest.handlers):
        # more than the threads that run models only adds memory.
        self.large_payloads = asyncio.Semaphore(max(2, executor.default_thread_count()))

    # -- health and metadata -----------------------------------------------------------------

    async def ready(self) -> bool:
        """Ready when the server holds at least one model and every model it holds is ready.

        KServe answers true unconditionally; here readiness follows the models, so a server
        whose only model was unloaded (or that has none yet) takes no traffic until one is
        loaded."""
        models = list(self.repository.get_models().values())
        if not models:
            return False
        for model in models:
            if not await model.healthy():
                return False
        return True

    def model_names(self) -> list[str]:
        return list(self.repository.get_models())

    def get_model(self, name: str, version: str | None = None) -> BaseKServeModel:
        model = self.repository.get_model(name)
        if model is None:
            raise ModelNotFound(name)
        if version:
            if model.version is None:
                raise Unsupported(f"model {name!r} has no versions; drop /versions/{version}")
            if version != model.version:
                raise ModelNotFound(f"{name} version {version}")
        return model

    def get_ready_model(self, name: str, version: str | None = None) -> InferenceModel:
        model = self.get_model(name, version)
        if not model.ready:
            raise ModelNotReady(name)
        if not isinstance(model, InferenceModel):
            raise Unsupported(f"model {name!r} does not serve inference requests")
        return model

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        return await self.get_model(name, version).healthy()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": SERVER_EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.get_model(name, version)
        metadata: dict[str, Any] = {"name": name, "platform": ""}
        if model.version is not None:
            metadata["versions"] = [model.version]
        if isinstance(model, InferenceModel):
            metadata["inputs"] = model.get_input_types()
            metadata["outputs"] = model.get_output_types()
        else:
            metadata["inputs"] = []
            metadata["outputs"] = []
        return metadata

    # -- inference ---------------------------------------------------------------------------

    def _batcher(self, model: InferenceModel) -> Batcher | None:
        if self.batch_config is None:
            return None
        entry = self._batchers.get(model.name)
        if entry is None or entry[0] is not model:
            entry = (model, Batcher(self.batch_config, model.__call__, self.in_flight))
            self._batchers[model.name] = entry
        return entry[1]

    def _send_waiting_batches(self) -> None:
        for _model, batcher in self._batchers.values():
            batcher.flush_all()

    def start_inference(
        self,
        model: InferenceModel,
        payload: Any,
        headers: dict[str, str],
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> Awaitable[tuple[Any, dict[str, str]]]:
        """What :meth:`infer` awaits: the model's call (or its batcher's), which raises what the
        model raised. For callers that map errors with :func:`as_wharf_error` themselves (one
        coroutine less per request)."""
        if verb is InferenceVerb.PREDICT and self.batch_config is not None:
            batcher = self._batcher(model)
            if batcher is not None:
                return batcher.submit(payload, headers)
        return model(payload, headers, verb)

    async def infer(
        self,
        model: InferenceModel,
        payload: Any,
        headers: dict[str, str],
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> tuple[Any, dict[str, str]]:
        try:
            return await self.start_inference(model, payload, headers, verb)
        except WharfError:
            raise
        except Exception as exc:
            raise as_wharf_error(exc) from exc

    # -- repository extension ----------------------------------------------------------------

    async def load(self, name: str) -> bool:
        _check_model_dir_name(name)
        loop = asyncio.get_running_loop()
        try:
            # Loading reads files and unpickles: keep it off the event loop.
            ok = await loop.run_in_executor(executor.get(), self.repository.load, name)
        except WharfError:
            raise
        except ModelMissingError as exc:
            raise ModelNotFound(name) from exc
        except Exception as exc:
            raise InvalidInput(f"failed to load model {name!r}: {exc}") from exc
        if not ok:
            raise ModelNotReady(name)
        model = self.repository.get_model(name)
        if model is not None:
            model.start()
        return True

    async def unload(self, name: str) -> bool:
        try:
            self.repository.unload(name)
        except KeyError as exc:
            raise ModelNotFound(name) from exc
        self._batchers.pop(name, None)
        return True
