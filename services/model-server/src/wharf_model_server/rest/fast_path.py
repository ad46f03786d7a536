"""A raw ASGI front for the inference routes; everything else goes to the FastAPI app.

``POST .../infer``, ``:predict`` and ``:explain`` are the hot path. Serving them straight from
the ASGI scope skips FastAPI's routing, dependency solving and response classes (measured in
docs/model-server.md); FastAPI still serves every other route, ``/docs`` and the OpenAPI schema,
where the same inference routes are declared and call the same protocol modules.

Every request passes the body size limit here first: a ``Content-Length`` above it is answered
413 before its body is read, whatever the route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wharf_datapath.tracing import MODEL, RequestInfo, http_request_info
from wharf_model_server.dataplane import DataPlane
from wharf_model_server.errors import RequestTooLarge, WharfError
from wharf_model_server.rest import body as request_body
from wharf_model_server.rest import v1, v2
from wharf_model_server.rest.handlers import JSON, OCTET_STREAM, HttpResult, error_result

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_V2_PREFIX = "/v2/models/"
_V1_PREFIX = "/v1/models/"


Route = tuple[str, str, str | None]

# The inference paths seen, with their routes: a server sees the same few paths over and over.
# Bounded (paths come from clients): once full, new paths are matched but not remembered, and a
# long path never is (a model name is at most 63 characters; 1,024 heads of 64 KiB would pin
# over 100 MiB).
_ROUTE_CACHE: dict[str, Route] = {}
_ROUTE_CACHE_SIZE = 1024
_ROUTE_CACHE_PATH_MAX = 256


def match_inference_route(path: str) -> Route | None:
    """(kind, model, version) for an inference path; kind is v2, v1:predict or v1:explain."""
    route = _ROUTE_CACHE.get(path)
    if route is None:
        route = _match_inference_route(path)
        if (
            route is not None
            and len(path) <= _ROUTE_CACHE_PATH_MAX
            and len(_ROUTE_CACHE) < _ROUTE_CACHE_SIZE
        ):
            _ROUTE_CACHE[path] = route
    return route


def _match_inference_route(path: str) -> Route | None:
    if path.startswith(_V2_PREFIX) and path.endswith("/infer"):
        rest = path[len(_V2_PREFIX) : -len("/infer")]
        name, sep, version = rest.partition("/versions/")
        if not name or "/" in name or (sep and (not version or "/" in version)):
            return None
        return "v2", name, version or None
    if path.startswith(_V1_PREFIX):
        name, sep, verb = path[len(_V1_PREFIX) :].rpartition(":")
        if sep and name and "/" not in name and verb in ("predict", "explain"):
            return f"v1:{verb}", name, None
    return None


def describe_request(scope: Scope) -> RequestInfo | None:
    """The model server's span for a request (when tracing is on): POSTs only (inference and
    generation), not the probes and metadata reads that GET."""
    if scope["method"] != "POST":
        return None
    route = match_inference_route(scope["path"])
    if route is None:
        return http_request_info(scope, f"POST {scope['path']}")
    kind, name, version = route
    template = _ROUTES[kind] if version is None else _VERSIONED_V2
    info = http_request_info(scope, f"POST {template}", template)
    return RequestInfo(info.name, {**info.attributes, MODEL: name})


_ROUTES = {
    "v2": "/v2/models/{model_name}/infer",
    "v1:predict": "/v1/models/{model_name}:predict",
    "v1:explain": "/v1/models/{model_name}:explain",
}
_VERSIONED_V2 = "/v2/models/{model_name}/versions/{model_version}/infer"


_CONTENT_TYPES = {JSON: JSON.encode("latin-1"), OCTET_STREAM: OCTET_STREAM.encode("latin-1")}


async def send_result(send: Send, result: HttpResult, close: bool = False) -> None:
    content_type = _CONTENT_TYPES.get(result.content_type)
    if content_type is None:
        content_type = result.content_type.encode("latin-1")
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(result.body))]
    if close:
        # The rest of the body is not read: the connection cannot carry another request.
        headers.append((b"connection", b"close"))
    if result.headers:
        for key, value in result.headers.items():
            headers.append((key.lower().encode("latin-1"), str(value).encode("latin-1")))
    await send({"type": "http.response.start", "status": result.status, "headers": headers})
    await send({"type": "http.response.body", "body": result.body})


class InferenceFastPath:
    def __init__(self, dataplane: DataPlane, fallback: ASGIApp, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.fallback = fallback
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = request_body.declared_length(scope["headers"])
            if length is not None and length > self.max_body_bytes:
                error = RequestTooLarge(self.max_body_bytes, length)
                await send_result(send, error_result(error), close=True)
                return
            if scope["method"] == "POST":
                route = match_inference_route(scope["path"])
                if route is not None:
                    await self._serve(route, length, scope, receive, send)
                    return
        await self.fallback(scope, receive, send)

    async def _serve(
        self,
        route: Route,
        length: int | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            body = await request_body.read_body(receive, length, self.max_body_bytes)
        except request_body.ClientDisconnected:
            return
        except WharfError as exc:
            await send_result(send, error_result(exc), close=True)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        kind, name, version = route
        if kind == "v2":
            inference = v2.infer(self.dataplane, name, version, body, headers)
        elif kind == "v1:predict":
            inference = v1.predict(self.dataplane, name, body, headers)
        else:
            inference = v1.explain(self.dataplane, name, body, headers)
        del body  # run_inference drops it once decoded
        await send_result(send, await inference)
