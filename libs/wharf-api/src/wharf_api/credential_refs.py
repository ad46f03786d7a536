"""Storage credentials as a cluster pod takes them: by reference to their Secrets (pure).

`wharf_api.credentials` decides which variables and files the storage initializer gets (KServe's
credential builder); `wharf up` writes them out as they are. A pod on a cluster must not carry a
Secret's value in its spec, so here each variable whose value is one of a used Secret's values
becomes a reference to that Secret's key (`secretKeyRef`), the others stay literal (endpoints,
regions, file paths), and each credential file is its Secret mounted read-only at
`secrets_dir/<secret>`, where the variables already point. A file merged from several Secrets
(the docker `config.json` of `oci://` registry logins) has no one Secret to mount: it is left
out, with a note.

Which Secrets to read is `secrets_to_read`: those the ServiceAccount lists under `secrets`, the
one the InferenceService's `serving.kserve.io/storageSecretName` annotation names, and for an
`oci://` URI the ServiceAccount's `imagePullSecrets` (its registry logins).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wharf_api.credentials import CredentialSettings, StorageCredentials, parse_secret

__all__ = [
    "CredentialReferences",
    "EnvReference",
    "SecretKeyRef",
    "SecretMount",
    "credential_references",
    "secrets_to_read",
]

# a volume name is a DNS label
_VOLUME_NAME_MAX = 63


@dataclass(frozen=True)
class SecretKeyRef:
    secret: str
    key: str


@dataclass(frozen=True)
class EnvReference:
    """One variable: a literal `value`, or a key of a Secret (`secret_ref`)."""

    name: str
    value: str | None = None
    secret_ref: SecretKeyRef | None = None


@dataclass(frozen=True)
class SecretMount:
    """A Secret mounted read-only (mode 0400) as the volume `volume` at `mount_path`."""

    secret: str
    volume: str
    mount_path: str


@dataclass(frozen=True)
class CredentialReferences:
    env: tuple[EnvReference, ...] = ()  # sorted by name
    mounts: tuple[SecretMount, ...] = ()  # one per Secret, in the order its files came
    notes: tuple[str, ...] = ()  # safe to show: no values


def secrets_to_read(
    storage_uri: str,
    service_account: Mapping[str, Any] | None,
    annotations: Mapping[str, str] | None,
    settings: CredentialSettings,
) -> tuple[str, ...]:
    """The names of the Secrets the credentials of `storage_uri` may come from, sorted."""
    account = service_account or {}
    names = {s.get("name") for s in account.get("secrets") or [] if isinstance(s, Mapping)}
    if storage_uri.strip().lower().startswith("oci://"):
        pulls = account.get("imagePullSecrets") or []
        names |= {s.get("name") for s in pulls if isinstance(s, Mapping)}
    chosen = (annotations or {}).get(settings.storage_secret_name_annotation)
    if chosen:
        names.add(chosen)
    return tuple(sorted(n for n in names if isinstance(n, str) and n))


def credential_references(
    found: StorageCredentials, secrets: Iterable[Mapping[str, Any]], *, secrets_dir: str
) -> CredentialReferences:
    """`found` (from `storage_credentials` with the same `secrets_dir`) by reference to the
    Secrets it used, among `secrets` (the manifests it was given)."""
    used = {s.name: s for s in map(parse_secret, secrets) if s.name in found.secrets_used}
    env: list[EnvReference] = []
    for name, value in sorted(found.env.items()):
        raw = value.encode("utf-8")
        ref = next(
            (
                SecretKeyRef(secret.name, key)
                for secret in used.values()
                for key, data in sorted(secret.data.items())
                if data == raw
            ),
            None,
        )
        env.append(EnvReference(name, secret_ref=ref) if ref else EnvReference(name, value=value))
    mounts: list[SecretMount] = []
    notes = list(found.notes)
    prefix = secrets_dir.rstrip("/") + "/"
    for secret_file in found.files:
        owner = secret_file.path.removeprefix(prefix).split("/", 1)[0]
        if owner not in used:
            notes.append(
                f"{secret_file.path}: merged credential files are not mounted on a cluster"
            )
            continue
        volume = f"storage-secret-{owner}"[:_VOLUME_NAME_MAX]
        if all(m.volume != volume for m in mounts):
            mounts.append(SecretMount(owner, volume, prefix + owner))
    return CredentialReferences(tuple(env), tuple(mounts), tuple(notes))
