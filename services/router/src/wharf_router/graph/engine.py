"""Walks the graph for one request, as KServe's `routeStep` does; the I/O is a `Caller`.

A step answers (body, status); a transport failure, a bad condition input or an unmatched
Switch raise `RoutingError` (status and cause), which the app turns into KServe's
`{"error": "Failed to process request", "cause": ...}`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from wharf_api.resources.inference_graph import InferenceGraphSpec, InferenceRouter, InferenceStep
from wharf_router.graph import decisions
from wharf_router.graph.spec import ROOT

log = logging.getLogger("wharf.router.graph")


@dataclass(frozen=True)
class Answer:
    body: bytes
    status: int


class RoutingError(Exception):
    def __init__(self, status: int, cause: str) -> None:
        super().__init__(cause)
        self.status = status
        self.cause = cause


Headers = Sequence[tuple[str, str]]

# the headers every step of the current request is sent (the steps of an Ensemble run as
# tasks, which copy the context)
_FORWARDED: ContextVar[Headers] = ContextVar("forwarded_headers", default=())


class Caller(Protocol):
    async def __call__(self, url: str, body: bytes, headers: Headers) -> Answer:
        """POST `body` to `url`; raise RoutingError(500, cause) when no answer comes."""
        ...


def crypto_point() -> int:
    """KServe draws the Splitter's point from crypto/rand."""
    return secrets.randbelow(100)


class GraphEngine:
    def __init__(
        self,
        spec: InferenceGraphSpec,
        call: Caller,
        point: Callable[[], int] = crypto_point,
    ) -> None:
        self.spec = spec
        self.call = call
        self.point = point

    async def route(self, body: bytes, headers: Headers = ()) -> Answer:
        """The graph's answer to one request; `headers` are those forwarded to every step."""
        token = _FORWARDED.set(headers)
        try:
            return await self.route_node(ROOT, body)
        finally:
            _FORWARDED.reset(token)

    async def route_node(self, name: str, body: bytes) -> Answer:
        started = time.perf_counter()
        try:
            return await self._route_node(name, self.spec.nodes[name], body)
        finally:
            log.debug("node %s took %.1f ms", name, (time.perf_counter() - started) * 1e3)

    async def _route_node(self, name: str, node: InferenceRouter, body: bytes) -> Answer:
        steps = node.steps or []
        kind = node.router_type
        if kind == "Splitter":
            step = decisions.pick_split(steps, self.point())
            if step is None:
                raise RoutingError(500, "no route was selected by the splitter")
            return await self.execute(step, body)
        if kind == "Switch":
            step = decisions.pick_switch(decisions.parse_json(body), steps)
            if step is None:
                raise RoutingError(404, "None of the routes matched with the switch condition")
            return await self.execute(step, body)
        if kind == "Ensemble":
            return await self._ensemble(steps, body)
        if kind == "Sequence":
            return await self._sequence(steps, body)
        raise RoutingError(500, f"invalid route type: {kind} (node {name})")

    async def _sequence(self, steps: list[InferenceStep], request: bytes) -> Answer:
        previous: Answer | None = None
        for i, step in enumerate(steps):
            body = decisions.step_input(step, i, request, previous.body if previous else None)
            if step.condition:
                document = decisions.parse_json(previous.body if previous else b"")
                if document is decisions.NOT_PARSED:
                    raise RoutingError(500, "invalid response")
                if not decisions.condition_holds(document, step.condition):
                    # the condition does not hold: the sequence ends with the answer so far
                    return Answer(previous.body if previous else b"", 200)
            previous = await self.execute(step, body)
            if step.dependency == "Hard" and not decisions.successful(previous.status):
                return previous
        return previous or Answer(b"", 200)

    async def _ensemble(self, steps: list[InferenceStep], request: bytes) -> Answer:
        results = await asyncio.gather(
            *(self.execute(step, request) for step in steps), return_exceptions=True
        )
        merged: list[tuple[str, Any]] = []
        for i, (step, result) in enumerate(zip(steps, results, strict=True)):
            if isinstance(result, BaseException):
                raise result
            document = decisions.parse_json(result.body)
            if not isinstance(document, dict):
                raise RoutingError(
                    500, f"step {decisions.ensemble_key(step, i)}: the answer is not a JSON object"
                )
            if step.dependency == "Hard" and not decisions.successful(result.status):
                # the first failed Hard step, in step order, answers for the whole node
                return result
            merged.append((decisions.ensemble_key(step, i), document))
        return Answer(decisions.merge_ensemble(merged), 200)

    async def execute(self, step: InferenceStep, body: bytes) -> Answer:
        if step.node_name:
            return await self.route_node(step.node_name, body)
        if not step.service_url:
            raise RoutingError(500, f"step {step.name or '?'} has no serviceUrl")
        return await self.call(step.service_url, body, _FORWARDED.get())
