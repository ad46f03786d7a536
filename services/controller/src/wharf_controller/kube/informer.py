"""A cache of one kind kept current by list+watch: watch from the list's resourceVersion with
bookmarks, resume from the last version seen, list again on 410 Gone, back off on errors.

A watch that fails (connection dropped, 5xx, 429) is resumed from the last version seen rather
than listed again: a list of every object on each hiccup is what overloads an API server that is
already struggling. Only 410 Gone (the version is older than the server keeps) needs a list."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from wharf_controller.kube.api import Api, ApiError, Kind
from wharf_controller.kube.backoff import Backoff

log = logging.getLogger(__name__)
JSON = dict[str, Any]
# (event type ADDED/MODIFIED/DELETED, new or last object, previous object or None)
Handler = Callable[[str, JSON, JSON | None], Awaitable[None] | None]
Sleep = Callable[[float], Awaitable[None]]


class Informer:
    def __init__(
        self,
        api: Api,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout_s: int = 300,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.api, self.kind = api, kind
        self.namespace = namespace
        self.query: dict[str, str] = {}
        if label_selector:
            self.query["labelSelector"] = label_selector
        if field_selector:
            self.query["fieldSelector"] = field_selector
        self.watch_timeout_s = watch_timeout_s
        self.backoff = backoff or Backoff()
        self._sleep = sleep  # injectable: the retry delays are checked without waiting them
        self.store: dict[tuple[str, str], JSON] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.relists = 0
        self.missing = False  # the kind is not served (its CRD is not installed)

    def get(self, name: str, namespace: str | None = None) -> JSON | None:
        return self.store.get((namespace or "", name))

    def items(self, namespace: str | None = None) -> list[JSON]:
        return [o for (ns, _), o in self.store.items() if namespace is None or ns == namespace]

    async def _emit(self, event: str, obj: JSON, old: JSON | None) -> None:
        for handler in self.handlers:
            result = handler(event, obj, old)
            if result is not None:
                await result

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
        meta = obj["metadata"]
        return meta.get("namespace") or "", meta["name"]

    async def _list(self) -> str:
        listing = await self.api.request("GET", self.kind.path(self.namespace), query=self.query)
        fresh = {self._key(o): o for o in listing.get("items") or []}
        for obj in listing.get("items") or []:
            slim(obj)
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
        old = self.store
        self.store = fresh
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None or before["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                await self._emit("ADDED" if before is None else "MODIFIED", obj, before)
        for key, obj in old.items():
            if key not in fresh:
                await self._emit("DELETED", obj, obj)
        self.relists += 1
        self.missing = False  # served now, if its CRD came after the controller
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    async def run(self) -> None:
        version: str | None = None  # None: list (again) before watching
        while True:
            try:
                if version is None:
                    version = await self._list()
                    self.backoff.reset()
                while True:
                    query = {
                        **self.query,
                        "resourceVersion": version,
                        "allowWatchBookmarks": "true",
                        "timeoutSeconds": str(self.watch_timeout_s),
                    }
                    async for event in self.api.watch(self.kind.path(self.namespace), query):
                        version = await self._apply(event, version)
                        self.backoff.reset()  # the server answers again: start small next time
            except _Gone:
                log.info("%s: watch expired (410); listing again", self.kind.kind)
                version = None
            except ApiError as exc:
                if exc.status == 410:
                    version = None
                    continue
                if exc.status == 404:
                    if not self.missing:
                        log.info("%s is not served (no CRD): watching for it", self.kind.kind)
                    self.missing = True
                    self.synced.set()
                    version = None
                    await self._sleep(max(self.backoff.next_delay(), 10.0))
                    continue
                await self._retry_later(exc, version)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                await self._retry_later(exc, version)

    async def _retry_later(self, exc: Exception, version: str | None) -> None:
        delay = self.backoff.next_delay()
        then = "listing" if version is None else f"watching from {version}"
        log.warning("%s: %r; %s again in %.1fs", self.kind.kind, exc, then, delay)
        await self._sleep(delay)

    async def _apply(self, event: Mapping[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            raise ApiError(int(obj.get("code") or 0), str(obj.get("message")))
        new_version = str(obj.get("metadata", {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        slim(obj)
        obj.setdefault("apiVersion", self.kind.api_version)
        obj.setdefault("kind", self.kind.kind)
        key = self._key(obj)
        before = self.store.get(key)
        if kind == "DELETED":
            self.store.pop(key, None)
            await self._emit("DELETED", obj, before)
        else:
            self.store[key] = obj
            await self._emit(str(kind), obj, before)
        return new_version


def slim(obj: JSON) -> JSON:
    """Drop managedFields: the cache never reads them, and they are often half an object."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


class _Gone(Exception):
    pass
