"""The LLMInferenceService controller: caches of the services, their configs and their children,
a work queue of keys, and one reconcile per key (the plan from `wharf_api.llm`, its children
applied where they differ and pruned when no longer desired, the status written when it
changes). The decisions are pure (`desired.llm_*`, `llm_status`); this module only moves data.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from wharf_api import WharfValidationError
from wharf_api.config import (
    CONFIGMAP_NAME,
    ConfigError,
    InferenceServiceConfig,
    from_configmap_data,
)
from wharf_api.credential_refs import secrets_to_read
from wharf_api.credentials import CredentialsError, CredentialSettings
from wharf_api.llm import LLMPlan, LLMPlanError
from wharf_api.resources import LLMInferenceServiceConfig
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_controller.decisions import covers, needs_apply, to_prune
from wharf_controller.desired.llm_inference_service import (
    LLMDesiredError,
    LLMInputs,
    entry_point,
    expected_llm_children,
)
from wharf_controller.desired.llm_router import names
from wharf_controller.desired.llm_router_peers import PEER_TOKEN_KEY
from wharf_controller.desired.llm_workload import NAME_LABEL, PART_OF, PART_OF_LABEL
from wharf_controller.desired.meta import owner_reference
from wharf_controller.desired.storage import CredentialRefs, credential_refs
from wharf_controller.kube.api import (
    BY_KIND,
    CLUSTER_STORAGE_CONTAINER,
    CONFIG_MAP,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_POOL,
    LLM_CHILD_KINDS,
    LLM_INFERENCE_SERVICE,
    LLM_INFERENCE_SERVICE_CONFIG,
    SECRET,
    SERVICE_ACCOUNT,
    Api,
    ApiError,
)
from wharf_controller.kube.informer import Informer, slim
from wharf_controller.kube.queue import WorkQueue
from wharf_controller.kube.worker import reconcile_forever, start_worker
from wharf_controller.kube.worker import stop as stop_workers
from wharf_controller.llm_render import parse_llm, parse_llm_config, render_llm_service
from wharf_controller.llm_status import LLMObserved, llm_status
from wharf_controller.metrics import Metrics
from wharf_controller.status import failed_status

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]
KIND = "LLMInferenceService"
OWNED = f"app.kubernetes.io/managed-by=wharf,{PART_OF_LABEL}={PART_OF}"


class NotReconciled(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Conflict(Exception):
    """The object changed since it was read (409): reconcile again from the cache."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Mapping[str, Any]) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def configs_used(obj: Mapping[str, Any], applied: Iterable[str]) -> set[str]:
    """The config names a service depends on: those last applied, and its baseRefs (a baseRef
    that was missing has not been applied yet, and its arrival must reconcile the service)."""
    refs = (obj.get("spec") or {}).get("baseRefs") or []
    return {*applied, *(str(r.get("name")) for r in refs if isinstance(r, Mapping))}


def uses_config(
    obj: Mapping[str, Any],
    used: set[str],
    config_name: str,
    config_namespace: str,
    system_namespace: str,
) -> bool:
    """Whether a change of the config (namespace, name) can change the service's plan."""
    namespace = obj["metadata"].get("namespace") or ""
    return config_name in used and config_namespace in (namespace, system_namespace)


class LLMController:
    def __init__(
        self,
        api: Api,
        *,
        config_namespace: str = "kserve",
        workers: int = 2,
        resync_s: float = 600.0,
        metrics: Metrics | None = None,
        watch_timeout_s: int = 300,
    ) -> None:
        self.api = api
        self.config_namespace = config_namespace
        self.workers = workers
        self.resync_s = resync_s
        self.metrics = metrics or Metrics()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.config = InferenceServiceConfig()
        self.config_error: str | None = None
        w = watch_timeout_s
        self.services = Informer(api, LLM_INFERENCE_SERVICE, watch_timeout_s=w)
        self.llm_configs = Informer(api, LLM_INFERENCE_SERVICE_CONFIG, watch_timeout_s=w)
        self.storage_containers = Informer(api, CLUSTER_STORAGE_CONTAINER, watch_timeout_s=w)
        self.configmap = Informer(
            api, CONFIG_MAP, namespace=config_namespace,
            field_selector=f"metadata.name={CONFIGMAP_NAME}", watch_timeout_s=w,
        )  # fmt: skip
        self.children = {
            k.kind: Informer(api, k, label_selector=OWNED, watch_timeout_s=w)
            for k in LLM_CHILD_KINDS
        }
        self.used: dict[Key, set[str]] = {}
        self.reconciled = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def informers(self) -> list[Informer]:
        return [
            self.configmap,
            self.llm_configs,
            self.storage_containers,
            *self.children.values(),
            self.services,
        ]

    async def start_caches(self) -> None:
        self.configmap.handlers.append(self._on_configmap)
        self.llm_configs.handlers.append(self._on_llm_config)
        self.storage_containers.handlers.append(lambda _e, _o, _p: self.resync())
        self.services.handlers.append(self._on_service)
        for informer in self.children.values():
            informer.handlers.append(self._on_child)
        for informer in self.informers:
            self._tasks.append(asyncio.create_task(informer.run()))
        for informer in self.informers:
            await informer.synced.wait()

    def caches_synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    async def start_workers(self) -> None:
        for _ in range(self.workers):
            self._tasks.append(start_worker(self._worker()))
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        await stop_workers(self.queue, self._tasks)

    def resync(self) -> None:
        for obj in self.services.items():
            self.queue.add(_key(obj))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            self.resync()

    # ---- events -------------------------------------------------------------------------
    def _on_service(self, event: str, obj: JSON, old: JSON | None) -> None:
        if event == "DELETED":
            self.used.pop(_key(obj), None)
            return  # the garbage collector removes the children
        meta, before = obj["metadata"], (old or {}).get("metadata") or {}
        if (
            old is None
            or meta.get("generation") != before.get("generation")
            or meta.get("annotations") != before.get("annotations")
            or meta.get("labels") != before.get("labels")
            or meta.get("deletionTimestamp")
        ):
            self.queue.add(_key(obj))

    def _on_child(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(NAME_LABEL)
        if owner:
            self.queue.add((_key(obj)[0], owner))

    def _on_llm_config(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        namespace, name = _key(obj)
        for svc in self.services.items():
            used = configs_used(svc, self.used.get(_key(svc), ()))
            if uses_config(svc, used, name, namespace, self.config_namespace):
                self.queue.add(_key(svc))

    def _on_configmap(self, event: str, obj: JSON, _old: JSON | None) -> None:
        try:
            self.config = (
                InferenceServiceConfig()
                if event == "DELETED"
                else from_configmap_data(obj.get("data") or {})
            )
            self.config_error = None
        except ConfigError as exc:
            log.error("%s", exc)
            self.config_error = str(exc)
        self.resync()

    # ---- one reconcile --------------------------------------------------------------------
    async def _worker(self) -> None:
        await reconcile_forever(
            self.queue,
            self.reconcile,
            kind=KIND,
            metrics=self.metrics,
            expected=(Conflict, ApiError),
            on_done=self._count_reconcile,
        )

    def _count_reconcile(self) -> None:
        self.reconciled += 1

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        obj = self.services.get(name, namespace)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        await self.reconcile_object(obj)

    def _configs(self) -> list[LLMInferenceServiceConfig]:
        out = []
        for doc in self.llm_configs.items():
            try:
                out.append(parse_llm_config(doc))
            except (WharfValidationError, ValueError) as exc:
                log.warning("%s/%s: skipped: %s", *_key(doc), exc)
        return out

    async def reconcile_object(self, obj: JSON) -> None:
        key = _key(obj)
        generation = int(obj["metadata"].get("generation") or 0)
        previous = obj.get("status") or {}
        try:
            if self.config_error:
                raise NotReconciled("InvalidConfig", self.config_error)
            llmisvc = parse_llm(obj)
            plan, inputs, desired = render_llm_service(
                llmisvc,
                self._configs(),
                self.config,
                storage_containers=[
                    ClusterStorageContainer.model_validate(o)
                    for o in self.storage_containers.items()
                ],
                owner=owner_reference(obj),
                inference_pool_api=not self.children[INFERENCE_POOL.kind].missing,
                gateway_api=not self.children[HTTP_ROUTE.kind].missing,
                system_namespace=self.config_namespace,
            )
            self.used[key] = {a.name for a in plan.applied_configs}
            credentials = await self._credentials(plan, obj)
            if credentials is not None:
                inputs = dataclasses.replace(inputs, credentials=credentials)
                desired = expected_llm_children(inputs)
            created_once = [c for c in desired if c["kind"] == SECRET.kind]
            desired = [c for c in desired if c["kind"] != SECRET.kind]
            for child in desired:
                if self.children[child["kind"]].missing:
                    raise NotReconciled(
                        "MissingCRD", f"{child['kind']} is not served: install its CRD"
                    )
        except (
            WharfValidationError,
            LLMPlanError,
            LLMDesiredError,
            CredentialsError,
            NotReconciled,
        ) as exc:
            reason = (
                exc.reason
                if isinstance(exc, NotReconciled)
                else "StorageCredentials"
                if isinstance(exc, CredentialsError)
                else "InvalidSpec"
            )
            await self._write_status(
                obj, failed_status(reason, str(exc), generation, _now(), previous, "")
            )
            return
        await self._create_absent(created_once)
        await self._apply(desired)
        await self._prune(obj, desired)
        await self._write_status(obj, self._status(plan, inputs, desired, generation, previous))

    async def _credentials(self, plan: LLMPlan, obj: Mapping[str, Any]) -> CredentialRefs | None:
        """The model download's credentials, as for an InferenceService: the Secrets
        `wharf_api.credential_refs.secrets_to_read` names for the pods' ServiceAccount (default
        `default`). Read by GET each reconcile, never cached."""
        downloads = [m for m in plan.storage if not m.uri.startswith("pvc://")]
        if not plan.storage_initializer or not downloads:
            return None
        pod = plan.main.leader or plan.main.worker
        account_name = (pod.service_account_name if pod is not None else None) or "default"
        account = await self.api.get(SERVICE_ACCOUNT, account_name, plan.namespace)
        annotations = obj["metadata"].get("annotations") or {}
        settings = CredentialSettings.from_config(self.config.credentials.model_dump(by_alias=True))
        secrets = []
        uri = downloads[0].uri
        for secret_name in secrets_to_read(uri, account, annotations, settings):
            found = await self.api.get(SECRET, secret_name, plan.namespace)
            if found is not None:
                secrets.append(found)
        return credential_refs(uri, account, secrets, annotations=annotations, config=self.config)

    def _status(
        self,
        plan: LLMPlan,
        inputs: LLMInputs,
        desired: list[JSON],
        generation: int,
        previous: Mapping[str, Any],
    ) -> JSON:
        ns = plan.namespace
        kinds = {(c["kind"], c["metadata"]["name"]) for c in desired}
        pool = plan.router.scheduler.pool_name if plan.router and plan.router.scheduler else ""
        entry = entry_point(inputs)
        observed = LLMObserved(
            workloads={w.name: self.children[w.kind].get(w.name, ns) for w in plan.workloads},
            scheduler=self.children[DEPLOYMENT.kind].get(names(plan.name)["deployment"], ns),
            inference_pool=self.children[INFERENCE_POOL.kind].get(pool, ns) if pool else None,
            http_route=self.children[HTTP_ROUTE.kind].get(entry.route, ns) if entry.route else None,
        )
        return llm_status(
            plan,
            observed,
            generation,
            _now(),
            previous,
            entry_service=entry.service,
            entry_port=entry.port,
            pool_expected=("InferencePool", pool) in kinds,
            route_expected=entry.route is not None and ("HTTPRoute", entry.route) in kinds,
        )

    async def _create_absent(self, wanted: list[JSON]) -> None:
        """The router's peer token Secret: created with a random token when absent, never
        written again (it is immutable), read by GET (Secrets are never listed or watched). A
        Secret of that name the user made is used as it is. Deleted with the service (owner
        reference); not pruned. The token is never logged."""
        for obj in wanted:
            meta = obj["metadata"]
            if await self.api.get(SECRET, meta["name"], meta["namespace"]) is not None:
                continue
            token = secrets.token_hex(32)
            body = {**obj, "data": {PEER_TOKEN_KEY: base64.b64encode(token.encode()).decode()}}
            self.metrics.writes.labels("create").inc()
            try:
                await self.api.create(SECRET, body)
            except ApiError as exc:
                if exc.status != 409:  # 409: made meanwhile, by someone else: theirs stands
                    raise

    async def _apply(self, desired: list[JSON]) -> None:
        for child in desired:
            informer = self.children[child["kind"]]
            meta = child["metadata"]
            observed = informer.get(meta["name"], meta["namespace"])
            if not needs_apply(child, observed):
                continue
            self.metrics.writes.labels("apply").inc()
            stored = slim(await self.api.apply(child))
            stored.setdefault("apiVersion", child["apiVersion"])
            stored.setdefault("kind", child["kind"])
            informer.store[(meta["namespace"], meta["name"])] = stored

    async def _prune(self, owner: JSON, desired: list[JSON]) -> None:
        namespace, name = _key(owner)
        uid = owner["metadata"]["uid"]
        for informer in self.children.values():
            mine = [
                o
                for o in informer.items(namespace)
                if (o["metadata"].get("labels") or {}).get(NAME_LABEL) == name
            ]
            for obj in to_prune(mine, desired, uid):
                self.metrics.writes.labels("delete").inc()
                await self.api.delete(
                    BY_KIND[obj["kind"]],
                    obj["metadata"]["name"],
                    namespace,
                    obj["metadata"].get("uid"),
                )

    async def _write_status(self, obj: JSON, status: JSON) -> None:
        if covers(obj.get("status") or {}, status):
            return
        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        self.metrics.writes.labels("status").inc()
        try:
            await self.api.request(
                "PATCH",
                LLM_INFERENCE_SERVICE.path(meta.get("namespace"), meta["name"]) + "/status",
                body=body,
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"{meta['namespace']}/{meta['name']}: {exc.reason}") from None
            raise
