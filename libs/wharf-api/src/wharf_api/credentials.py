"""Storage credentials from a ServiceAccount and its Secrets, the way KServe's credential
builder gives them to the storage initializer (pure: manifests in, data out, no I/O).

KServe's pod webhook reads the predictor's ServiceAccount (default `default`) and, for each
Secret it lists under `secrets` (or only the Secret named by the `serving.kserve.io/
storageSecretName` annotation of the InferenceService, when present), adds to the storage
initializer, by the first rule that matches the Secret's data keys:

- **S3** (the secret access key, `AWS_SECRET_ACCESS_KEY` as the shipped `inferenceservice-config`
  names it, or KServe's code default `awsSecretAccessKey`): `AWS_ACCESS_KEY_ID`,
  `AWS_SECRET_ACCESS_KEY`, and from the Secret's `serving.kserve.io/s3-*` annotations (else the
  config's `credentials.s3` defaults): `S3_ENDPOINT` + `AWS_ENDPOINT_URL` (`https://` unless
  `s3-usehttps: "0"`), `S3_USE_HTTPS`, `S3_VERIFY_SSL`, `awsAnonymousCredential`,
  `AWS_DEFAULT_REGION`, `S3_USER_VIRTUAL_BUCKET`, `S3_USE_ACCELERATE`, `AWS_CA_BUNDLE`;
- **GCS** (`gcloud-application-credentials.json`): that file, and
  `GOOGLE_APPLICATION_CREDENTIALS` naming it;
- **Azure** (`AZ_CLIENT_ID`/`AZURE_CLIENT_ID`, or only `AZURE_STORAGE_ACCESS_KEY`): the
  `AZURE_*` variables (legacy `AZ_*` keys give the `AZURE_*` names);
- **HTTP(S)** (`https-host` + `headers`): `<https-host>-headers` = the headers JSON;
- **Hugging Face** (`HF_TOKEN`): `HF_TOKEN`;
- other Secrets are skipped, with a note.

A ServiceAccount annotated `eks.amazonaws.com/role-arn` (IRSA) also gets the S3 settings from
its own `serving.kserve.io/s3-*` annotations. For `oci://` URIs the registry credentials of
`kubernetes.io/dockerconfigjson` Secrets (the pod's and the ServiceAccount's
`imagePullSecrets`, or such a Secret under `secrets`) are merged into one docker `config.json`
written under `secrets_dir`, named by `KSERVE_OCI_DOCKER_CONFIG` (KServe's variable for its
OCI fetcher).

The caller writes `files` (mode 0600, below `secrets_dir`) and passes `env` to
`wharf_storage.download(..., env=...)` or to the storage initializer's environment.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KSERVE_GROUP = "serving.kserve.io"
STORAGE_SECRET_NAME_ANNOTATION = f"{KSERVE_GROUP}/storageSecretName"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
DOCKER_CONFIG_JSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
OCI_DOCKER_CONFIG_ENV = "KSERVE_OCI_DOCKER_CONFIG"
GCS_CREDENTIAL_FILE = "gcloud-application-credentials.json"
GCS_CREDENTIAL_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
HTTPS_HOST_KEY = "https-host"
HTTPS_HEADERS_KEY = "headers"
HEADERS_SUFFIX = "-headers"
HF_TOKEN_KEY = "HF_TOKEN"

AZURE_KEYS = (
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_ACCESS_KEY",
)
AZURE_LEGACY = {
    "AZURE_SUBSCRIPTION_ID": "AZ_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID": "AZ_TENANT_ID",
    "AZURE_CLIENT_ID": "AZ_CLIENT_ID",
    "AZURE_CLIENT_SECRET": "AZ_CLIENT_SECRET",
}

# annotation suffix -> (environment variable, S3Settings field with the config's default)
_S3_SETTINGS = (
    ("s3-verifyssl", "S3_VERIFY_SSL", "verify_ssl"),
    ("s3-useanoncredential", "awsAnonymousCredential", "use_anonymous_credential"),
    ("s3-region", "AWS_DEFAULT_REGION", "region"),
    ("s3-usevirtualbucket", "S3_USER_VIRTUAL_BUCKET", "use_virtual_bucket"),
    ("s3-useaccelerate", "S3_USE_ACCELERATE", "use_accelerate"),
    ("s3-cabundle", "AWS_CA_BUNDLE", "ca_bundle"),
)
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class CredentialsError(ValueError):
    """The ServiceAccount or a Secret cannot be used; the message names the object and field."""


@dataclass(frozen=True)
class S3Settings:
    """`credentials.s3` of `inferenceservice-config` (defaults as KServe ships the ConfigMap)."""

    access_key_id_name: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_name: str = "AWS_SECRET_ACCESS_KEY"
    endpoint: str = ""
    use_https: str = ""
    region: str = ""
    verify_ssl: str = ""
    use_virtual_bucket: str = ""
    use_accelerate: str = ""
    use_anonymous_credential: str = ""
    ca_bundle: str = ""


@dataclass(frozen=True)
class CredentialSettings:
    """`credentials` of `inferenceservice-config`."""

    s3: S3Settings = field(default_factory=S3Settings)
    gcs_credential_file_name: str = GCS_CREDENTIAL_FILE
    storage_secret_name_annotation: str = STORAGE_SECRET_NAME_ANNOTATION

    @classmethod
    def from_config(cls, credentials: Mapping[str, Any] | None) -> CredentialSettings:
        """From the `credentials` JSON object of the ConfigMap (KServe's field names)."""
        if not credentials:
            return cls()
        s3 = credentials.get("s3") or {}
        gcs = credentials.get("gcs") or {}
        defaults = S3Settings()
        return cls(
            s3=S3Settings(
                access_key_id_name=str(s3.get("s3AccessKeyIDName") or defaults.access_key_id_name),
                secret_access_key_name=str(
                    s3.get("s3SecretAccessKeyName") or defaults.secret_access_key_name
                ),
                endpoint=str(s3.get("s3Endpoint", "")),
                use_https=str(s3.get("s3UseHttps", "")),
                region=str(s3.get("s3Region", "")),
                verify_ssl=str(s3.get("s3VerifySSL", "")),
                use_virtual_bucket=str(s3.get("s3UseVirtualBucket", "")),
                use_accelerate=str(s3.get("s3UseAccelerate", "")),
                use_anonymous_credential=str(s3.get("s3UseAnonymousCredential", "")),
                ca_bundle=str(s3.get("s3CABundle", "")),
            ),
            gcs_credential_file_name=str(gcs.get("gcsCredentialFileName") or GCS_CREDENTIAL_FILE),
            storage_secret_name_annotation=str(
                credentials.get("storageSecretNameAnnotation") or STORAGE_SECRET_NAME_ANNOTATION
            ),
        )


@dataclass(frozen=True)
class SecretFile:
    path: str  # absolute, below the caller's secrets_dir
    content: bytes
    mode: int = 0o600


@dataclass(frozen=True)
class StorageCredentials:
    env: dict[str, str]  # variable -> value, for the storage initializer
    files: tuple[SecretFile, ...] = ()  # to write before it starts
    secrets_used: tuple[str, ...] = ()  # the Secrets that contributed, in order
    notes: tuple[str, ...] = ()  # Secrets skipped and why (safe to show: no values)


@dataclass(frozen=True)
class SecretData:
    name: str
    type: str
    annotations: Mapping[str, str]
    data: Mapping[str, bytes]

    def text(self, key: str) -> str:
        try:
            return self.data[key].decode("utf-8")
        except UnicodeDecodeError:
            raise CredentialsError(f"Secret {self.name}: data.{key} is not UTF-8 text") from None


def _meta(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = manifest.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CredentialsError(f"{where} must be a mapping of strings")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def parse_secret(manifest: Mapping[str, Any]) -> SecretData:
    """A Secret manifest's name, type, annotations and data (`data` base64, `stringData` text;
    `stringData` wins on a shared key, as the API server merges them)."""
    name = str(_meta(manifest).get("name") or "")
    if not name:
        raise CredentialsError("Secret <unnamed>: metadata.name is required")
    data: dict[str, bytes] = {}
    for key, value in _string_map(manifest.get("data"), f"Secret {name}: data").items():
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsError(f"Secret {name}: data.{key} is not valid base64") from None
    for key, value in _string_map(manifest.get("stringData"), f"Secret {name}: stringData").items():
        data[key] = value.encode("utf-8")
    annotations = _string_map(_meta(manifest).get("annotations"), f"Secret {name}: annotations")
    return SecretData(name, str(manifest.get("type") or "Opaque"), annotations, data)


def _names(entries: Any, where: str) -> list[str]:
    if entries is None:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise CredentialsError(f"{where} must be a list of {{name: ...}}")
    names = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise CredentialsError(f"{where}[{i}].name is required")
        names.append(name)
    return names


def s3_env(annotations: Mapping[str, str], settings: S3Settings) -> dict[str, str]:
    """KServe's S3 variables from `serving.kserve.io/s3-*` annotations, else the config's."""
    env: dict[str, str] = {}
    endpoint = annotations.get(f"{KSERVE_GROUP}/s3-endpoint")
    if endpoint is not None:
        use_https = annotations.get(f"{KSERVE_GROUP}/s3-usehttps")
        scheme = "http" if use_https == "0" else "https"
        if use_https is not None:
            env["S3_USE_HTTPS"] = use_https
        env["S3_ENDPOINT"] = endpoint
        env["AWS_ENDPOINT_URL"] = f"{scheme}://{endpoint}"
    elif settings.endpoint:
        scheme = "http" if settings.use_https == "0" else "https"
        if settings.use_https == "0":
            env["S3_USE_HTTPS"] = settings.use_https
        env["S3_ENDPOINT"] = settings.endpoint
        env["AWS_ENDPOINT_URL"] = f"{scheme}://{settings.endpoint}"
    for suffix, variable, default_field in _S3_SETTINGS:
        value = annotations.get(f"{KSERVE_GROUP}/{suffix}")
        if value is None:
            value = str(getattr(settings, default_field))
        if value != "":
            env[variable] = value
    return env


def _s3_secret_keys(secret: SecretData, settings: S3Settings) -> tuple[str, str] | None:
    """The (access key id, secret access key) data keys, when this is an S3 Secret."""
    for id_key, secret_key in (
        (settings.access_key_id_name, settings.secret_access_key_name),
        ("awsAccessKeyID", "awsSecretAccessKey"),  # KServe's code defaults
    ):
        if secret_key in secret.data:
            return id_key, secret_key
    return None


def _docker_auths(secret: SecretData) -> dict[str, Any]:
    raw = secret.data.get(DOCKER_CONFIG_JSON_KEY)
    if raw is None:
        raise CredentialsError(
            f"Secret {secret.name}: type {DOCKER_CONFIG_JSON_TYPE} needs data.{DOCKER_CONFIG_JSON_KEY}"
        )
    try:
        config = json.loads(raw)
    except ValueError:
        raise CredentialsError(
            f"Secret {secret.name}: data.{DOCKER_CONFIG_JSON_KEY} is not JSON"
        ) from None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        raise CredentialsError(
            f"Secret {secret.name}: data.{DOCKER_CONFIG_JSON_KEY} has no 'auths' object"
        )
    return auths


@dataclass
class _Builder:
    settings: CredentialSettings
    secrets_dir: str
    env: dict[str, str] = field(default_factory=dict)
    files: list[SecretFile] = field(default_factory=list)
    used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, secret: SecretData) -> None:
        """One Secret, by KServe's rules (the first that matches its data keys)."""
        s3_keys = _s3_secret_keys(secret, self.settings.s3)
        gcs_file = self.settings.gcs_credential_file_name
        if s3_keys is not None:
            id_key, secret_key = s3_keys
            if id_key in secret.data:
                self.env["AWS_ACCESS_KEY_ID"] = secret.text(id_key)
            self.env["AWS_SECRET_ACCESS_KEY"] = secret.text(secret_key)
            self.env.update(s3_env(secret.annotations, self.settings.s3))
        elif gcs_file in secret.data:
            path = posixpath.join(self.secrets_dir, secret.name, gcs_file)
            self.files.append(SecretFile(path, secret.data[gcs_file]))
            self.env[GCS_CREDENTIAL_ENV] = path
        elif any(k in secret.data for k in ("AZ_CLIENT_ID", "AZURE_CLIENT_ID")):
            for key in AZURE_KEYS:
                legacy = AZURE_LEGACY.get(key)
                data_key = legacy if legacy and legacy in secret.data else key
                if data_key in secret.data:
                    self.env[key] = secret.text(data_key)
        elif "AZURE_STORAGE_ACCESS_KEY" in secret.data:
            self.env["AZURE_STORAGE_ACCESS_KEY"] = secret.text("AZURE_STORAGE_ACCESS_KEY")
        elif HTTPS_HOST_KEY in secret.data:
            if HTTPS_HEADERS_KEY not in secret.data:
                self.notes.append(f"Secret {secret.name}: https-host without headers: skipped")
                return
            host = secret.text(HTTPS_HOST_KEY).strip()
            self.env[host + HEADERS_SUFFIX] = secret.text(HTTPS_HEADERS_KEY)
        elif HF_TOKEN_KEY in secret.data:
            self.env[HF_TOKEN_KEY] = secret.text(HF_TOKEN_KEY)
        else:
            if "HDFS_NAMENODE" in secret.data:
                reason = "hdfs:// is not supported by Wharf"
            else:
                reason = "no storage credential keys"
            self.notes.append(f"Secret {secret.name}: {reason}: skipped")
            return
        self.used.append(secret.name)

    def add_docker_configs(self, secrets: list[SecretData]) -> None:
        merged: dict[str, Any] = {}
        for secret in secrets:
            for registry, entry in _docker_auths(secret).items():
                if registry in merged:
                    self.notes.append(
                        f"Secret {secret.name}: registry {registry} already has credentials "
                        "from an earlier Secret: kept the earlier"
                    )
                    continue
                merged[registry] = entry
            self.used.append(secret.name)
        if not merged:
            return
        path = posixpath.join(self.secrets_dir, "oci", "config.json")
        content = json.dumps({"auths": merged}, sort_keys=True).encode()
        self.files.append(SecretFile(path, content))
        self.env[OCI_DOCKER_CONFIG_ENV] = path

    def result(self) -> StorageCredentials:
        return StorageCredentials(
            dict(self.env), tuple(self.files), tuple(self.used), tuple(self.notes)
        )


def storage_credentials(
    storage_uri: str,
    service_account: Mapping[str, Any] | None,
    secrets: Iterable[Mapping[str, Any]],
    *,
    secrets_dir: str,
    annotations: Mapping[str, str] | None = None,
    image_pull_secrets: Sequence[str] = (),
    settings: CredentialSettings | None = None,
) -> StorageCredentials:
    """What the storage initializer needs for `storage_uri`.

    `service_account`: the ServiceAccount manifest the predictor names (None: no ServiceAccount,
    so no credentials, as KServe when it finds none); `secrets`: the Secret manifests of its
    namespace (at least those it names); `annotations`: the InferenceService's (for
    `serving.kserve.io/storageSecretName`); `image_pull_secrets`: the pod's imagePullSecrets
    names (used for oci:// URIs); `secrets_dir`: an absolute folder the caller will write
    `files` into. Raises CredentialsError when a named Secret is missing or malformed.
    """
    settings = settings or CredentialSettings()
    if not posixpath.isabs(secrets_dir):
        raise CredentialsError(f"secrets_dir {secrets_dir!r} must be an absolute path")
    by_name: dict[str, SecretData] = {}
    for manifest in secrets:
        secret = parse_secret(manifest)
        by_name[secret.name] = secret
    builder = _Builder(settings, secrets_dir.rstrip("/") or "/")

    def named(name: str, where: str) -> SecretData:
        if not _SECRET_NAME.match(name):
            raise CredentialsError(f"{where}: {name!r} is not a valid Secret name")
        try:
            return by_name[name]
        except KeyError:
            raise CredentialsError(f"{where} names Secret {name}, which was not found") from None

    sa_name = "default"
    sa_pull: list[str] = []
    sa_secrets: list[str] = []
    if service_account is not None:
        sa_name = str(_meta(service_account).get("name") or "default")
        where = f"ServiceAccount {sa_name}"
        sa_annotations = _string_map(_meta(service_account).get("annotations"), where)
        if IRSA_ANNOTATION in sa_annotations:
            builder.env.update(s3_env(sa_annotations, settings.s3))
        sa_secrets = _names(service_account.get("secrets"), f"{where}: secrets")
        sa_pull = _names(service_account.get("imagePullSecrets"), f"{where}: imagePullSecrets")

    docker: list[SecretData] = []
    chosen = (annotations or {}).get(settings.storage_secret_name_annotation)
    if chosen is not None:
        # The annotation's Secret replaces the ServiceAccount's list (KServe).
        sa_secrets = [chosen]
        where_list = f"annotation {settings.storage_secret_name_annotation}"
    else:
        where_list = f"ServiceAccount {sa_name}: secrets"
    if service_account is not None or chosen is not None:
        for name in sa_secrets:
            secret = named(name, where_list)
            if secret.type == DOCKER_CONFIG_JSON_TYPE:
                docker.append(secret)
            else:
                builder.add(secret)
    if storage_uri.strip().lower().startswith("oci://"):
        pulls = [*image_pull_secrets, *sa_pull]
        seen = {s.name for s in docker}
        for name in pulls:
            if name in seen:
                continue
            seen.add(name)
            docker.append(named(name, "imagePullSecrets"))
        builder.add_docker_configs(docker)
    else:
        builder.notes.extend(
            f"Secret {s.name}: registry credentials apply to oci:// URIs only: skipped"
            for s in docker
        )
    return builder.result()


__all__ = [
    "CredentialSettings",
    "CredentialsError",
    "S3Settings",
    "SecretData",
    "SecretFile",
    "StorageCredentials",
    "parse_secret",
    "s3_env",
    "storage_credentials",
]
