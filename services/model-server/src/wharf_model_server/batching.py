"""Adaptive batching: concurrent requests for one model are merged into one model call.

A batch is sent when it holds ``max_batch_size`` rows, when its first request has waited
``max_latency_ms``, or (``send_when_idle``, the default) at low load as soon as every request
the server has received and not yet answered is waiting in a batch: then no other request could
join it, and waiting would only add latency. So a lone request at low load goes at once, a
request that arrives while others are being served waits for company, and when the last of those
is answered the waiting ones leave together (:func:`should_send`). "Low load" is fewer than
``EAGER_BELOW`` requests in flight on average over the recent arrivals: under load, and on gRPC
whose queued calls the server cannot see, batches gather for ``max_latency_ms``. The transports
count the requests in flight (:class:`InFlight`).

V1 bodies are merged by concatenating ``instances`` when their rows have the same width (or
keys); V2/gRPC requests by concatenating each input along the first axis, when their inputs agree
in names, datatypes and trailing shapes. Results are split back by row counts, in order.

One bad request must not fail the requests batched with it. Requests whose rows cannot stack
with the others never share a batch (the merge key above), and when a merged batch fails
anyway (a value the model rejects, a NaN, a string among numbers), each member is run again
alone, so only the bad ones get the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wharf_protocol.errors import InferenceError
from wharf_protocol.infer_types import InferInput, InferOutput, InferRequest, InferResponse

RunModel = Callable[[Any, dict[str, str]], Awaitable[tuple[Any, dict[str, str]]]]


@dataclass(frozen=True)
class BatchConfig:
    max_batch_size: int = 32
    max_latency_ms: float = 5000.0
    # At low load, send as soon as nothing else in flight could join the batch (False: KServe's
    # rule alone, full batch or max latency).
    send_when_idle: bool = True


# The eager rule applies while the requests in flight, averaged over the recent arrivals, are
# fewer than this: at low concurrency. Under load (many requests in flight, or a transport such
# as gRPC whose queued calls the server cannot see) batches gather for max_latency as in KServe.
EAGER_BELOW = 2.0
# Weight of the newest arrival in that average (an exponential moving average).
RECENT_WEIGHT = 0.1


def nothing_else_can_join(
    waiting_requests: int, in_flight: int | None, recent_in_flight: float, config: BatchConfig
) -> bool:
    """The eager rule: at low load, every request the server has received and not yet answered
    is waiting in a batch, so no other could join them and waiting would only add latency.

    `waiting_requests`: requests waiting in any batch of the server; `in_flight`: requests
    received and not yet answered (those waiting included), None when nobody counts them;
    `recent_in_flight`: `in_flight` averaged over the recent arrivals."""
    if not config.send_when_idle or not in_flight:
        return False
    return in_flight <= waiting_requests and recent_in_flight < EAGER_BELOW


def should_send(
    waiting_rows: int,
    waiting_requests: int,
    in_flight: int | None,
    recent_in_flight: float,
    config: BatchConfig,
) -> bool:
    """Whether a batch leaves when a request joins it: when it is full, or by the eager rule
    (:func:`nothing_else_can_join`). Otherwise it leaves when a request in flight is answered
    and the eager rule holds then, or when its timer (`max_latency_ms`) fires."""
    if waiting_rows >= config.max_batch_size:
        return True
    return nothing_else_can_join(waiting_requests, in_flight, recent_in_flight, config)


class InFlight:
    """Requests received and not yet answered (the transports call `enter` and `leave`), how
    many of them wait in a batch, and their recent average. When a request is answered and the
    eager rule holds, `on_idle` sends the waiting ones."""

    __slots__ = ("config", "count", "on_idle", "recent", "waiting")

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self.count = 0
        self.waiting = 0
        self.recent = 0.0
        self.on_idle: Callable[[], None] | None = None

    def enter(self) -> None:
        self.count += 1
        self.recent += (self.count - self.recent) * RECENT_WEIGHT

    def leave(self) -> None:
        self.count -= 1
        if (
            self.waiting
            and self.on_idle is not None
            and nothing_else_can_join(self.waiting, self.count, self.recent, self.config)
        ):
            self.on_idle()


@dataclass
class _Item:
    payload: Any
    headers: dict[str, str]
    rows: int
    future: asyncio.Future[tuple[Any, dict[str, str]]]


@dataclass
class _Pending:
    items: list[_Item] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


def _row_shape(row: Any) -> Hashable:
    if isinstance(row, list):
        return len(row)
    if isinstance(row, dict):
        return tuple(row)
    return type(row).__name__


def batch_key(payload: Any) -> tuple[Hashable, int] | None:
    """The merge key and row count of a request, or None when it cannot be batched."""
    if isinstance(payload, dict):
        instances = payload.get("instances")
        if set(payload) != {"instances"} or not isinstance(instances, list) or not instances:
            return None
        shape = _row_shape(instances[0])
        for row in instances:
            if _row_shape(row) != shape:
                return None  # ragged on its own: the model answers it alone
        return ("v1", shape), len(instances)
    if isinstance(payload, InferRequest):
        if not payload.inputs:
            return None
        rows = {len(i.shape) and i.shape[0] for i in payload.inputs}
        if len(rows) != 1:
            return None
        (count,) = rows
        if not count or count < 1:
            return None
        signature = tuple((i.name, str(i.datatype), tuple(i.shape[1:])) for i in payload.inputs)
        outputs = tuple((o.name, bool(o.binary_data)) for o in (payload.request_outputs or []))
        return ("v2", signature, outputs, bool(payload.use_binary_outputs)), count
    return None


def merge(payloads: list[Any]) -> Any:
    first = payloads[0]
    if isinstance(first, dict):
        return {"instances": [row for p in payloads for row in p["instances"]]}
    merged_inputs = []
    for position, template in enumerate(first.inputs):
        array = np.concatenate([p.inputs[position].as_numpy() for p in payloads], axis=0)
        merged = InferInput(template.name, list(array.shape), template.datatype)
        merged.set_data_from_numpy(array, binary_data=False)
        merged_inputs.append(merged)
    return InferRequest(
        model_name=first.model_name,
        infer_inputs=merged_inputs,
        request_id=first.id,
        from_grpc=first.from_grpc,
        parameters=first.parameters,
        request_outputs=first.request_outputs,
    )


def split(response: Any, payloads: list[Any], counts: list[int]) -> list[Any]:
    total = sum(counts)
    bounds = np.cumsum([0, *counts])
    if isinstance(response, dict):
        predictions = response.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != total:
            raise InferenceError("size of prediction is not equal to the size of instances")
        return [
            {**response, "predictions": predictions[bounds[i] : bounds[i + 1]]}
            for i in range(len(counts))
        ]
    if not isinstance(response, InferResponse):
        raise InferenceError(
            f"a batched V2 model must return an InferResponse, got {type(response).__name__}"
        )
    arrays = [(o, o.as_numpy()) for o in response.outputs]
    for output, array in arrays:
        if array.ndim == 0 or array.shape[0] != total:
            raise InferenceError(
                f"output {output.name!r} has {array.shape[:1]} rows for a batch of {total}"
            )
    parts = []
    for i, request in enumerate(payloads):
        outputs = []
        for output, array in arrays:
            piece = array[bounds[i] : bounds[i + 1]]
            part = InferOutput(output.name, list(piece.shape), output.datatype)
            part.set_data_from_numpy(piece, binary_data=False)
            outputs.append(part)
        parts.append(
            InferResponse(
                response_id=request.id or response.id,
                model_name=response.model_name,
                infer_outputs=outputs,
                model_version=response.model_version,
                from_grpc=request.from_grpc,
                parameters=response.parameters,
                use_binary_outputs=request.use_binary_outputs,
                requested_outputs=request.request_outputs,
            )
        )
    return parts


class Batcher:
    def __init__(
        self, config: BatchConfig, run: RunModel, in_flight: InFlight | None = None
    ) -> None:
        self.config = config
        self._run = run
        self._in_flight = in_flight
        self._pending: dict[Hashable, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, payload: Any, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
        described = batch_key(payload)
        if described is None or described[1] >= self.config.max_batch_size:
            return await self._run(payload, headers)
        key, rows = described
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is not None and pending.rows + rows > self.config.max_batch_size:
            self._flush(key)
            pending = None
        if pending is None:
            pending = _Pending()
            self._pending[key] = pending
        item = _Item(payload, headers, rows, loop.create_future())
        pending.items.append(item)
        pending.rows += rows
        tracker = self._in_flight
        if tracker is not None:
            tracker.waiting += 1
        if tracker is None:
            send = should_send(pending.rows, 0, None, 0.0, self.config)
        else:
            send = should_send(
                pending.rows, tracker.waiting, tracker.count, tracker.recent, self.config
            )
        if send:
            self._flush(key)
        elif pending.timer is None:
            pending.timer = loop.call_later(self.config.max_latency_ms / 1000, self._flush, key)
        return await item.future

    def flush_all(self) -> None:
        """Sends every waiting batch now."""
        for key in list(self._pending):
            self._flush(key)

    def _flush(self, key: Hashable) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        if self._in_flight is not None:
            self._in_flight.waiting -= len(pending.items)
        task = asyncio.get_running_loop().create_task(self._execute(pending.items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, items: list[_Item]) -> None:
        if len(items) == 1:
            await self._run_alone(items[0])
            return
        try:
            payloads = [item.payload for item in items]
            response, response_headers = await self._run(merge(payloads), items[0].headers)
            parts = split(response, payloads, [item.rows for item in items])
            results = [(part, dict(response_headers)) for part in parts]
        except Exception:
            # Which member broke the batch is unknown: each runs alone and gets its own answer.
            await asyncio.gather(*(self._run_alone(item) for item in items))
            return
        except BaseException as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            raise
        for item, result in zip(items, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _run_alone(self, item: _Item) -> None:
        try:
            result = await self._run(item.payload, item.headers)
        except BaseException as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not item.future.done():
            item.future.set_result(result)
