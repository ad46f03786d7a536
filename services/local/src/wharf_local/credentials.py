"""Storage credentials for a local download, from the ServiceAccount and Secrets applied with
the manifests, as KServe's storage initializer gets them on a cluster.

The decision (which Secret, which variables and files) is `wharf_api.credentials`; this module
writes the files it asks for into a private folder under `$WHARF_HOME/secrets` and returns the
environment for the download.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.credentials import CredentialSettings, storage_credentials
from wharf_api.plan import ComponentPlan

SECRET_KINDS = frozenset({"Secret", "ServiceAccount"})


def download_env(
    uri: str,
    plan: ComponentPlan,
    namespace: str,
    annotations: Mapping[str, str] | None,
    applied: Mapping[str, dict[str, Any]],
    config: InferenceServiceConfig,
    secrets_root: Path,
) -> tuple[dict[str, str] | None, list[str]]:
    """The environment for downloading `uri` (None: this process's own) and notes to show.

    Raises `wharf_api.credentials.CredentialsError` naming the Secret or field at fault.
    """
    sa_name = plan.pod.service_account_name or "default"
    service_account = applied.get(f"ServiceAccount/{namespace}/{sa_name}")
    secrets = [doc for key, doc in applied.items() if key.startswith(f"Secret/{namespace}/")]
    annotated = (annotations or {}).get(config.credentials.storage_secret_name_annotation)
    if service_account is None and not annotated and not plan.pod.image_pull_secrets:
        return None, []
    folder = secrets_root / namespace / plan.service_name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    creds = storage_credentials(
        uri,
        service_account,
        secrets,
        secrets_dir=str(folder.absolute()),
        annotations=annotations,
        image_pull_secrets=plan.pod.image_pull_secrets,
        settings=CredentialSettings.from_config(
            config.credentials.model_dump(mode="json", by_alias=True)
        ),
    )
    for item in creds.files:
        path = Path(item.path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(item.content)
    if not creds.env and not creds.files:
        return None, list(creds.notes)
    return {**os.environ, **creds.env}, list(creds.notes)
