"""Request/response payload logging as CloudEvents to an HTTP sink, like KServe's agent logger.

Requests only enqueue (``put_nowait``); a few background workers post the events. A full queue
or a dead sink drops events (counted in ``wharf_payload_log_dropped_total``) and never delays or
fails the inference request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import httpx
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from wharf_model_server import metrics

logger = logging.getLogger("wharf.payload_logger")

REQUEST_EVENT_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT_TYPE = "org.kubeflow.serving.inference.response"


class LogMode(StrEnum):
    ALL = "all"
    REQUEST = "request"
    RESPONSE = "response"


@dataclass(frozen=True)
class LoggerConfig:
    url: str
    mode: LogMode = LogMode.ALL
    queue_size: int = 100
    workers: int = 2
    source_uri: str = "http://localhost:8080/"
    inference_service: str = ""
    namespace: str = ""
    component: str = "predictor"
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class _Event:
    event_type: str
    event_id: str
    model_name: str
    endpoint: str
    body: bytes
    content_type: str
    recorded: datetime


def build_event(config: LoggerConfig, event: _Event) -> tuple[dict[str, str], bytes]:
    attributes = {
        "type": event.event_type,
        "source": config.source_uri,
        "id": event.event_id,
        "time": event.recorded,
        "datacontenttype": event.content_type,
        "inferenceservicename": config.inference_service or event.model_name,
        "namespace": config.namespace,
        "component": config.component,
        "endpoint": event.endpoint,
    }
    message = to_binary_event(CloudEvent(attributes=attributes, data=event.body))
    return dict(message.headers), message.body


class PayloadLogger:
    def __init__(self, config: LoggerConfig) -> None:
        self.config = config
        self._queue: asyncio.Queue[_Event] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def logs_requests(self) -> bool:
        return self.config.mode in (LogMode.ALL, LogMode.REQUEST)

    @property
    def logs_responses(self) -> bool:
        return self.config.mode in (LogMode.ALL, LogMode.RESPONSE)

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.config.queue_size)
        self._client = httpx.AsyncClient(timeout=self.config.timeout_seconds)
        self._workers = [
            asyncio.create_task(self._work(), name=f"payload-logger-{i}")
            for i in range(self.config.workers)
        ]

    async def stop(self, drain_seconds: float = 2.0) -> None:
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_seconds)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def log(
        self,
        event_type: str,
        event_id: str,
        model_name: str,
        endpoint: str,
        body: bytes,
        content_type: str = "application/json",
    ) -> None:
        if self._queue is None:
            return
        event = _Event(
            event_type, event_id, model_name, endpoint, body, content_type, datetime.now(UTC)
        )
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            metrics.PAYLOAD_LOG_DROPPED.labels("queue_full").inc()

    def log_request(
        self, event_id: str, model_name: str, endpoint: str, body: bytes, content_type: str
    ) -> None:
        if self.logs_requests:
            self.log(REQUEST_EVENT_TYPE, event_id, model_name, endpoint, body, content_type)

    def log_response(
        self, event_id: str, model_name: str, endpoint: str, body: bytes, content_type: str
    ) -> None:
        if self.logs_responses:
            self.log(RESPONSE_EVENT_TYPE, event_id, model_name, endpoint, body, content_type)

    async def _work(self) -> None:
        assert self._queue is not None and self._client is not None
        while True:
            event = await self._queue.get()
            try:
                headers, body = build_event(self.config, event)
                response = await self._client.post(self.config.url, content=body, headers=headers)
                if response.status_code >= 300:
                    metrics.PAYLOAD_LOG_DROPPED.labels("sink_status").inc()
            except Exception as exc:  # a sink failure must never reach the request path
                metrics.PAYLOAD_LOG_DROPPED.labels("sink_error").inc()
                logger.debug("payload log to %s failed: %s", self.config.url, exc)
            finally:
                self._queue.task_done()
