"""The public model API, shaped like KServe's ``kserve.Model`` so custom models port by import.

A request runs ``preprocess -> predict | explain -> postprocess``. Each handler may be sync or
``async``. Consecutive sync stages run together in one hop to the thread pool (one hop per
request for the built-in runtimes), async stages are awaited on the loop. Sync stages that have
proved short run on the loop instead, without the hop, a bounded amount per turn of the loop
(``wharf_model_server.inline``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from wharf_model_server import executor, metrics
from wharf_model_server.inline import InlineGate, inline_limit, loop_turn
from wharf_model_server.predictor_config import PredictorConfig
from wharf_protocol.infer_types import InferRequest, InferResponse

if TYPE_CHECKING:
    from wharf_model_server.predictor_client import PredictorClient

logger = logging.getLogger("wharf.model")
trace_logger = logging.getLogger("wharf.trace")


class InferenceVerb(Enum):
    EXPLAIN = "explain"
    PREDICT = "predict"


class BaseKServeModel:
    """What the server needs from any model: a name, readiness and lifecycle hooks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = False
        self.engine = False
        self.version: str | None = None

    async def healthy(self) -> bool:
        return self.ready

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def start(self) -> None:
        """Called once the server registered the model."""

    def stop(self) -> None:
        """Called when the model is unloaded or the server shuts down."""

    async def start_engine(self) -> None:
        """Long-running engines (if any) start here."""

    def stop_engine(self) -> None:
        """Stops what ``start_engine`` started."""


class InferenceModel(BaseKServeModel):
    async def __call__(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> tuple[Any, dict[str, str]]:
        raise NotImplementedError

    def get_input_types(self) -> list[dict[str, Any]]:
        return []

    def get_output_types(self) -> list[dict[str, Any]]:
        return []


@dataclass(frozen=True)
class _Stage:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    arity: int  # 1: (payload), 2: (+ headers), 3: (+ response_headers)

    def call(self, payload: Any, headers: dict[str, str], response_headers: dict[str, str]) -> Any:
        if self.arity >= 3:
            return self.fn(payload, headers, response_headers)
        if self.arity == 2:
            return self.fn(payload, headers)
        return self.fn(payload)


@dataclass(frozen=True)
class _Group:
    is_async: bool
    stages: tuple[_Stage, ...]
    # sync groups only: whether they run inline or in the pool
    gate: InlineGate | None = None


# What handlers usually return, which cannot be awaited: the check skips ``isawaitable`` (an
# abstract base class check) for them. Exact types only; a subclass takes the full check. A
# tuple, not a set: a result's type is compared, never hashed (a metaclass may forbid hashing).
_NEVER_AWAITABLE = (
    InferResponse, InferRequest, dict, list, tuple, str, bytes, int, float, bool, type(None)
)  # fmt: skip


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 2
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return 3
    if any(p.name == "response_headers" for p in params):
        return 3
    return min(len(params), 3) or 1


class Model(InferenceModel):
    # The longest thread CPU time per request of a group of sync handlers that may run on the
    # event loop once it has proved short (None: wharf_model_server.inline's default for the
    # pool's size; 0: always in the thread pool).
    inline_limit_s: float | None = None

    def __init__(
        self,
        name: str,
        predictor_config: PredictorConfig | None = None,
        return_response_headers: bool = False,
    ) -> None:
        super().__init__(name)
        config = predictor_config or PredictorConfig()
        self.predictor_config = config
        self.predictor_host = config.predictor_host
        self.protocol = config.predictor_protocol
        self.use_ssl = config.predictor_use_ssl
        self.timeout = config.predictor_request_timeout_seconds
        self.retries = config.predictor_request_retries
        self.explainer_host: str | None = None
        self.enable_latency_logging = False
        self._return_response_headers = return_response_headers
        # keyed by the verb's name: hashing the enum member is a Python-level call per request
        self._pipelines: dict[object, tuple[_Group, ...]] = {}
        self._predictor_client: PredictorClient | None = None

    async def healthy(self) -> bool:
        """Ready, and with ``predictor_health_check`` also the predictor's model is ready."""
        if not self.ready:
            return False
        if self.predictor_config.predictor_health_check and self.predictor_host:
            return await self._client().model_ready(self.name)
        return True

    # -- handlers users override -------------------------------------------------------------

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return payload

    def validate(self, payload: Any) -> Any:
        return payload

    def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """Override with sync or ``async`` code. Not overridden, it forwards to the predictor."""
        return self._forward_predict(payload, headers)

    def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """Override with sync or ``async`` code. Not overridden, it forwards to the explainer."""
        return self._forward_explain(payload, headers)

    async def _forward_predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if not self.predictor_host:
            raise NotImplementedError(
                f"model {self.name!r} implements no predict and has no predictor_host to forward to"
            )
        return await self._client().predict(self.name, payload, headers or {})

    async def _forward_explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if not self.explainer_host:
            raise NotImplementedError(f"model {self.name!r} has no explainer")
        return await self._client().explain(self.explainer_host, self.name, payload, headers or {})

    def postprocess(
        self,
        result: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        return result

    # -- the pipeline ------------------------------------------------------------------------

    def _client(self) -> PredictorClient:
        if self._predictor_client is None:
            from wharf_model_server.predictor_client import PredictorClient

            config = PredictorConfig(
                predictor_host=self.predictor_host,
                predictor_protocol=str(self.protocol),
                predictor_use_ssl=self.use_ssl,
                predictor_request_timeout_seconds=self.timeout,
                predictor_request_retries=self.retries,
                predictor_health_check=self.predictor_config.predictor_health_check,
            )
            self._predictor_client = PredictorClient(config)
        return self._predictor_client

    async def close_predictor_client(self) -> None:
        """Closes the connections to the predictor; the server calls this on shutdown."""
        if self._predictor_client is not None:
            await self._predictor_client.close()
            self._predictor_client = None

    def _overridden(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(Model, name, None)

    def _build_pipeline(self, verb: InferenceVerb) -> tuple[_Group, ...]:
        names: list[str] = []
        # Default pre/post/validate are identities: skipping them saves a call and a histogram
        # observation per request.
        if self._overridden("preprocess"):
            names.append("preprocess")
        if self._overridden("validate"):
            names.append("validate")
        names.append("explain" if verb is InferenceVerb.EXPLAIN else "predict")
        if self._overridden("postprocess"):
            names.append("postprocess")
        groups: list[_Group] = []
        for name in names:
            fn = getattr(self, name)
            if name in ("predict", "explain") and not self._overridden(name):
                fn = getattr(self, f"_forward_{name}")
            is_async = inspect.iscoroutinefunction(fn)
            stage = _Stage(name, fn, is_async, 1 if name == "validate" else _arity(fn))
            if not is_async and groups and not groups[-1].is_async:
                groups[-1] = _Group(False, (*groups[-1].stages, stage), groups[-1].gate)
            else:
                groups.append(_Group(is_async, (stage,), None if is_async else self._gate()))
        return tuple(groups)

    def _gate(self) -> InlineGate:
        if self.inline_limit_s is not None:
            return InlineGate(max(0.0, self.inline_limit_s))
        return InlineGate(inline_limit(executor.thread_count()))

    def _pipeline(self, verb: InferenceVerb) -> tuple[_Group, ...]:
        # keyed by the member's name (an enum's hash runs Python code); any other verb a caller
        # passes (a plain string) by itself, as before
        key: object = verb._name_ if type(verb) is InferenceVerb else verb
        pipeline = self._pipelines.get(key)
        if pipeline is None:
            pipeline = self._build_pipeline(verb)
            self._pipelines[key] = pipeline
        return pipeline

    def _run_sync(
        self,
        group: _Group,
        payload: Any,
        headers: dict[str, str],
        response_headers: dict[str, str],
        timings: dict[str, float],
    ) -> Any:
        cpu_start = time.thread_time()
        group_start = time.perf_counter()
        try:
            for stage in group.stages:
                start = time.perf_counter()
                payload = stage.call(payload, headers, response_headers)
                elapsed = time.perf_counter() - start
                if stage.name != "validate":
                    metrics.stage_histogram(stage.name, self.name).observe(elapsed)
                    timings[stage.name] = elapsed
        finally:
            # a run that raised counts too: it held the loop (or the thread) all the same
            if group.gate is not None:
                wall = time.perf_counter() - group_start
                # a thread's CPU time is at most its wall time: within the limit, the second
                # CPU clock read (a system call here, ~2 us) cannot change the decision
                gate = group.gate
                cpu = wall if wall <= gate.limit_s else time.thread_time() - cpu_start
                gate.record(cpu, wall)
        return payload

    async def __call__(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> tuple[Any, dict[str, str]]:
        request_headers = headers if headers is not None else {}
        response_headers: dict[str, str] = {}
        timings: dict[str, float] = {}
        payload = body
        loop = asyncio.get_running_loop()
        for group in self._pipeline(verb):
            if group.is_async:
                stage = group.stages[0]
                start = time.perf_counter()
                payload = await stage.call(payload, request_headers, response_headers)
                elapsed = time.perf_counter() - start
                metrics.stage_histogram(stage.name, self.name).observe(elapsed)
                timings[stage.name] = elapsed
            else:
                if group.gate is not None and group.gate.inline:
                    turn = loop_turn()
                    if not turn.may_start(loop):
                        await turn.wait(loop)
                    payload = self._run_sync(
                        group, payload, request_headers, response_headers, timings
                    )
                else:
                    payload = await loop.run_in_executor(
                        executor.get(),
                        self._run_sync,
                        group,
                        payload,
                        request_headers,
                        response_headers,
                        timings,
                    )
                # a sync handler may hand back a coroutine (KServe's models do), inline or not
                if type(payload) not in _NEVER_AWAITABLE and inspect.isawaitable(payload):
                    payload = await payload
        if self.enable_latency_logging:
            trace_logger.info(
                "requestId: %s, %s",
                request_headers.get("x-request-id", "N.A."),
                ", ".join(f"{k}_ms: {v * 1000:.3f}" for k, v in timings.items()),
            )
        return payload, response_headers
