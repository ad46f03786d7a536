"""The model download of a serving pod: the storage-initializer init container, the volume at
`/mnt/models`, and the credentials it reads (as KServe's pod webhook injects them).

Which container downloads a URI is the ClusterStorageContainer that supports it, with the
config's `storageInitializer` image and resources where it gives none
(`wharf_api.storage_containers.storage_initializer`). Credentials are
those `wharf_api.credentials` finds for the ServiceAccount, by reference to their Secrets
(`wharf_api.credential_refs`): a value that comes from a Secret is a `secretKeyRef`, never
copied into the pod spec, and a credential file is the Secret mounted as a volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.credential_refs import credential_references
from wharf_api.credentials import CredentialSettings, storage_credentials
from wharf_api.plan import StorageMount
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_api.storage_containers import storage_initializer

JSON = dict[str, Any]

INIT_CONTAINER_NAME = "storage-initializer"
MODEL_VOLUME = "kserve-provision-location"
SECRETS_DIR = "/var/run/secrets/wharf-storage"


@dataclass(frozen=True)
class CredentialRefs:
    """Credentials in the shape a pod takes them."""

    env: tuple[JSON, ...] = ()
    volumes: tuple[JSON, ...] = ()
    mounts: tuple[JSON, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodStorage:
    init_containers: tuple[JSON, ...] = ()
    volumes: tuple[JSON, ...] = ()
    # mounts for the serving container
    mounts: tuple[JSON, ...] = ()
    notes: tuple[str, ...] = field(default=())


def credential_refs(
    storage_uri: str,
    service_account: Mapping[str, Any] | None,
    secrets: Sequence[Mapping[str, Any]],
    *,
    annotations: Mapping[str, str] | None,
    config: InferenceServiceConfig,
) -> CredentialRefs:
    """KServe's credential rules (`wharf_api.credentials`) by reference to their Secrets
    (`wharf_api.credential_refs`), written as a pod spec takes them."""
    settings = CredentialSettings.from_config(config.credentials.model_dump(by_alias=True))
    found = storage_credentials(
        storage_uri,
        service_account,
        secrets,
        secrets_dir=SECRETS_DIR,
        annotations=annotations,
        settings=settings,
    )
    refs = credential_references(found, secrets, secrets_dir=SECRETS_DIR)
    env: list[JSON] = [
        {"name": e.name, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
        if (ref := e.secret_ref) is not None
        else {"name": e.name, "value": e.value}
        for e in refs.env
    ]
    volumes = [
        {"name": m.volume, "secret": {"secretName": m.secret, "defaultMode": 0o400}}
        for m in refs.mounts
    ]
    mounts = [{"name": m.volume, "mountPath": m.mount_path, "readOnly": True} for m in refs.mounts]
    return CredentialRefs(tuple(env), tuple(volumes), tuple(mounts), refs.notes)


def _pvc(uri: str) -> tuple[str, str] | None:
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def pod_storage(
    storage: Sequence[StorageMount],
    config: InferenceServiceConfig,
    containers: Sequence[ClusterStorageContainer],
    credentials: CredentialRefs | None,
) -> PodStorage:
    """The init container, volumes and mounts that put each URI at its mount path.

    `pvc://claim/path` mounts the claim directly (KServe's enableDirectPvcVolumeMount), read-only,
    with no download.
    """
    creds = credentials or CredentialRefs()
    init: list[JSON] = []
    volumes: list[JSON] = []
    mounts: list[JSON] = []
    downloads: list[tuple[str, str, str]] = []  # uri, mount path, volume
    for i, mount in enumerate(storage):
        volume = MODEL_VOLUME if i == 0 else f"{MODEL_VOLUME}-{i}"
        pvc = _pvc(mount.uri)
        if pvc is not None and config.storage_initializer.enable_direct_pvc_volume_mount:
            claim, path = pvc
            volumes.append(
                {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            )
            entry: JSON = {"name": volume, "mountPath": mount.mount_path, "readOnly": True}
            if path:
                entry["subPath"] = path
            mounts.append(entry)
            continue
        volumes.append({"name": volume, "emptyDir": {}})
        mounts.append({"name": volume, "mountPath": mount.mount_path, "readOnly": True})
        downloads.append((mount.uri, mount.mount_path, volume))
    if downloads:
        init.append(_init_container(downloads, config, containers, creds))
        volumes.extend(creds.volumes)
    return PodStorage(tuple(init), tuple(volumes), tuple(mounts), creds.notes)


def _init_container(
    downloads: Sequence[tuple[str, str, str]],
    config: InferenceServiceConfig,
    containers: Sequence[ClusterStorageContainer],
    creds: CredentialRefs,
) -> JSON:
    chosen = storage_initializer(downloads[0][0], containers, config.storage_initializer)
    base = chosen.base
    args = [part for uri, path, _ in downloads for part in (uri, path)]
    container: JSON = {
        **base,
        "name": INIT_CONTAINER_NAME,
        "image": chosen.image,
        "args": args,
        "resources": chosen.resources,
        "volumeMounts": [
            *[{"name": volume, "mountPath": path} for _, path, volume in downloads],
            *creds.mounts,
        ],
    }
    env = [*(base.get("env") or []), *creds.env]
    if env:
        container["env"] = env
    return container
