"""The InferenceService controller: caches fed by list+watch, a work queue of keys, and one
reconcile per key (desired children from wharf-api's plan, applied only where they differ,
pruned when no longer desired, and the status written only when it changes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from wharf_api import (
    NoSupportingRuntimeError,
    WharfValidationError,
    default,
    parse_object,
    validate,
)
from wharf_api.config import (
    CONFIGMAP_NAME,
    ConfigError,
    InferenceServiceConfig,
    from_configmap_data,
)
from wharf_api.credential_refs import secrets_to_read
from wharf_api.credentials import CredentialsError, CredentialSettings
from wharf_api.defaulting import deployment_mode
from wharf_api.multinode import runtime_worker_spec
from wharf_api.names import ISVC_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from wharf_api.plan import PlanError, plan_inference_service
from wharf_api.resources import ClusterServingRuntime, InferenceService, ServingRuntime
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_controller.decisions import (
    affected_by_config,
    covers,
    needs_apply,
    to_prune,
)
from wharf_controller.desired import DesiredError, Inputs, expected_children
from wharf_controller.desired.meta import owner_reference
from wharf_controller.desired.model_cache import (
    CachedModel,
    CacheLookup,
    served_from_cache,
)
from wharf_controller.desired.storage import CredentialRefs, credential_refs
from wharf_controller.kube.api import (
    BY_KIND,
    CHILD_KINDS,
    CLUSTER_SERVING_RUNTIME,
    CLUSTER_STORAGE_CONTAINER,
    CONFIG_MAP,
    DEPLOYMENT,
    INFERENCE_SERVICE,
    KNATIVE_SERVICE_KEY,
    LEADER_WORKER_SET,
    SECRET,
    SERVICE_ACCOUNT,
    SERVING_RUNTIME,
    Api,
    ApiError,
    kind_key,
)
from wharf_controller.kube.informer import Informer, slim
from wharf_controller.kube.queue import WorkQueue
from wharf_controller.kube.worker import reconcile_forever, start_worker
from wharf_controller.kube.worker import stop as stop_workers
from wharf_controller.metrics import Metrics
from wharf_controller.render import (
    KNATIVE,
    RENDERED_MODES,
    Catalog,
    render_service,
)
from wharf_controller.status import failed_status, knative_status, standard_status

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]
KIND = "InferenceService"


class NotReconciled(Exception):
    """The resource cannot be reconciled for a reason its status names."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# the Ready condition's reason for each error a spec can cause
REASONS: dict[type[Exception], str] = {
    WharfValidationError: "InvalidSpec",
    PlanError: "InvalidSpec",
    DesiredError: "InvalidSpec",
    NoSupportingRuntimeError: "NoSupportingRuntime",
    CredentialsError: "StorageCredentials",
}


class Conflict(Exception):
    """The object changed since it was read (409): reconcile again from the cache."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Mapping[str, Any]) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


class Controller:
    def __init__(
        self,
        api: Api,
        *,
        config_namespace: str = "kserve",
        workers: int = 4,
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
        owned = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        w = watch_timeout_s
        self.services = Informer(api, INFERENCE_SERVICE, watch_timeout_s=w)
        self.runtimes = Informer(api, SERVING_RUNTIME, watch_timeout_s=w)
        self.cluster_runtimes = Informer(api, CLUSTER_SERVING_RUNTIME, watch_timeout_s=w)
        self.storage_containers = Informer(api, CLUSTER_STORAGE_CONTAINER, watch_timeout_s=w)
        self.configmap = Informer(
            api, CONFIG_MAP, namespace=config_namespace,
            field_selector=f"metadata.name={CONFIGMAP_NAME}", watch_timeout_s=w,
        )  # fmt: skip
        self.children = {
            kind_key(k.api_version, k.kind): Informer(
                api, k, label_selector=owned, watch_timeout_s=w
            )
            for k in CHILD_KINDS
        }
        self.reconciled = 0
        self._tasks: list[asyncio.Task[None]] = []
        # set when the model cache runs: the cache a predictor's URI is read from, if any
        self.model_cache: CacheLookup | None = None

    # ---- wiring --------------------------------------------------------------------------
    @property
    def informers(self) -> list[Informer]:
        return [
            self.configmap,
            self.runtimes,
            self.cluster_runtimes,
            self.storage_containers,
            *self.children.values(),
            self.services,
        ]

    async def start_caches(self) -> None:
        self.configmap.handlers.append(self._on_config)
        self.services.handlers.append(self._on_service)
        self.runtimes.handlers.append(lambda _e, o, _p: self._enqueue_namespace(_key(o)[0]))
        self.cluster_runtimes.handlers.append(lambda _e, _o, _p: self._enqueue_namespace(None))
        self.storage_containers.handlers.append(lambda _e, _o, _p: self._enqueue_namespace(None))
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

    def _enqueue_namespace(self, namespace: str | None) -> None:
        for obj in self.services.items(namespace):
            self.queue.add(_key(obj))

    def _on_service(self, event: str, obj: JSON, old: JSON | None) -> None:
        if event == "DELETED":
            return  # the garbage collector removes the children
        meta, before = obj["metadata"], (old or {}).get("metadata") or {}
        # our own status writes change only status and resourceVersion: nothing to do for them
        if (
            old is None
            or meta.get("generation") != before.get("generation")
            or meta.get("annotations") != before.get("annotations")
            or meta.get("labels") != before.get("labels")
            or meta.get("deletionTimestamp")
        ):
            self.queue.add(_key(obj))

    def _on_child(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(ISVC_LABEL)
        if owner:
            self.queue.add((_key(obj)[0], owner))

    def _on_config(self, event: str, obj: JSON, _old: JSON | None) -> None:
        try:
            new = (
                InferenceServiceConfig()
                if event == "DELETED"
                else from_configmap_data(obj.get("data") or {})
            )
            self.config_error = None
        except ConfigError as exc:
            log.error("%s", exc)
            self.config_error = str(exc)
            self._enqueue_namespace(None)
            return
        old_catalog, new_catalog = self._catalog(self.config), self._catalog(new)
        self.config = new
        affected = affected_by_config(
            self.services.items(),
            lambda o: render_service(_parsed(o), old_catalog, mode=_mode(o, old_catalog)),
            lambda o: render_service(_parsed(o), new_catalog, mode=_mode(o, new_catalog)),
        )
        for obj_ in affected:
            self.queue.add(_key(obj_))

    def _catalog(self, config: InferenceServiceConfig) -> Catalog:
        return Catalog(
            runtimes=[ServingRuntime.model_validate(o) for o in self.runtimes.items()],
            cluster_runtimes=[
                ClusterServingRuntime.model_validate(o) for o in self.cluster_runtimes.items()
            ],
            storage_containers=[
                ClusterStorageContainer.model_validate(o) for o in self.storage_containers.items()
            ],
            config=config,
        )

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            self.resync()

    def resync(self) -> None:
        self._enqueue_namespace(None)

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

    # ---- one reconcile --------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        obj = self.services.get(name, namespace)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        await self.reconcile_object(obj)

    async def reconcile_object(self, obj: JSON) -> None:
        meta = obj["metadata"]
        namespace, generation = meta.get("namespace") or "", int(meta.get("generation") or 0)
        previous = obj.get("status") or {}
        mode = deployment_mode(obj, self.config.deploy.default_deployment_mode)
        try:
            if self.config_error:
                raise NotReconciled("InvalidConfig", self.config_error)
            isvc = _parsed(obj)
            validate(isvc)
            if mode not in RENDERED_MODES:
                raise NotReconciled(
                    "UnsupportedDeploymentMode",
                    f"deployment mode {mode} is not reconciled by this controller",
                )
            catalog = self._catalog(self.config)
            catalog.runtimes = [
                r for r in catalog.runtimes if (r.metadata.namespace or "") == namespace
            ]
            plan = plan_inference_service(
                isvc, catalog.runtimes, catalog.cluster_runtimes, config=self.config
            )
            credentials = await self._credentials(isvc, plan.components[0].storage_uri)
            desired = expected_children(
                Inputs(
                    isvc=isvc,
                    plan=plan,
                    config=self.config,
                    storage_containers=catalog.storage_containers,
                    credentials=credentials,
                    owner=owner_reference(obj),
                    mode=mode,
                    status=previous,
                    runtime_worker=runtime_worker_spec(
                        plan.components[0], catalog.runtimes, catalog.cluster_runtimes
                    ),
                )
            )
            cached = self._cached_model(obj, plan.components[0].storage_uri)
            if cached is not None:
                desired = served_from_cache(desired, cached)
            for child in desired:
                if self.children[kind_key(child["apiVersion"], child["kind"])].missing:
                    raise NotReconciled(
                        "MissingCRD", f"{child['kind']} is not served: install its CRD"
                    )
        except (
            WharfValidationError,
            NoSupportingRuntimeError,
            PlanError,
            DesiredError,
            CredentialsError,
            NotReconciled,
        ) as exc:
            reason = (
                exc.reason
                if isinstance(exc, NotReconciled)
                else next(r for t, r in REASONS.items() if isinstance(exc, t))
            )
            await self._write_status(
                obj, failed_status(reason, str(exc), generation, _now(), previous, mode)
            )
            return
        await self._apply(desired)
        await self._prune(obj, desired)
        first = plan.components[0]
        runtime = (first.runtime, first.runtime_kind)
        if mode == KNATIVE:
            services: dict[str, JSON | None] = {
                c.component: self.children[KNATIVE_SERVICE_KEY].get(c.service_name, namespace)
                for c in plan.components
            }
            status = knative_status(plan, services, generation, _now(), previous, runtime)
        else:
            workloads: dict[str, JSON | None] = {
                c.component: self.children[
                    LEADER_WORKER_SET.kind if c.worker is not None else DEPLOYMENT.kind
                ].get(c.service_name, namespace)
                for c in plan.components
            }
            status = standard_status(plan, workloads, generation, _now(), previous, runtime)
        await self._write_status(obj, status)

    async def _credentials(self, isvc: InferenceService, uri: str | None) -> CredentialRefs | None:
        """Read the ServiceAccount and the Secrets it names (by GET: Secrets are not cached)."""
        if not uri or uri.startswith("pvc://"):
            return None
        namespace = isvc.metadata.namespace or "default"
        sa_name = isvc.spec.predictor.service_account_name or "default"
        account = await self.api.get(SERVICE_ACCOUNT, sa_name, namespace)
        settings = CredentialSettings.from_config(self.config.credentials.model_dump(by_alias=True))
        secrets = []
        for secret_name in secrets_to_read(uri, account, isvc.metadata.annotations, settings):
            found = await self.api.get(SECRET, secret_name, namespace)
            if found is not None:
                secrets.append(found)
        return credential_refs(
            uri,
            account,
            secrets,
            annotations=isvc.metadata.annotations,
            config=self.config,
        )

    def _cached_model(self, obj: Mapping[str, Any], uri: str | None) -> CachedModel | None:
        if self.model_cache is None or not uri:
            return None
        meta = obj["metadata"]
        return self.model_cache(uri, meta.get("namespace") or "", meta.get("annotations"))

    async def _apply(self, desired: list[JSON]) -> None:
        for child in desired:
            informer = self.children[kind_key(child["apiVersion"], child["kind"])]
            meta = child["metadata"]
            observed = informer.get(meta["name"], meta["namespace"])
            if not needs_apply(child, observed):
                continue
            self.metrics.writes.labels("apply").inc()
            stored = slim(await self.api.apply(child))
            stored.setdefault("apiVersion", child["apiVersion"])
            stored.setdefault("kind", child["kind"])
            # the watch brings the same object; keeping it now spares a second apply meanwhile
            informer.store[(meta["namespace"], meta["name"])] = stored

    async def _prune(self, owner: JSON, desired: list[JSON]) -> None:
        namespace, name = _key(owner)
        uid = owner["metadata"]["uid"]
        for informer in self.children.values():
            mine = [
                o
                for o in informer.items(namespace)
                if (o["metadata"].get("labels") or {}).get(ISVC_LABEL) == name
            ]
            for obj in to_prune(mine, desired, uid):
                self.metrics.writes.labels("delete").inc()
                await self.api.delete(
                    BY_KIND[kind_key(obj["apiVersion"], obj["kind"])],
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
                INFERENCE_SERVICE.path(meta.get("namespace"), meta["name"]) + "/status",
                body=body,
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"{meta['namespace']}/{meta['name']}: {exc.reason}") from None
            raise


def _parsed(obj: Mapping[str, Any]) -> InferenceService:
    parsed = default(parse_object(dict(obj)))
    assert isinstance(parsed, InferenceService)
    return parsed


def _mode(obj: Mapping[str, Any], catalog: Catalog) -> str:
    return deployment_mode(obj, catalog.config.deploy.default_deployment_mode)
