"""Hugging Face Hub repositories through huggingface_hub's snapshot_download.

`HF_TOKEN` authenticates, `HF_ENDPOINT` points at a mirror or a private hub. The library
downloads files in parallel, verifies them and resumes interrupted files itself.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from wharf_storage.errors import (
    AccessDenied,
    SourceNotFound,
    StorageError,
    TransferFailed,
    UnsafePath,
)
from wharf_storage.progress import ProgressCallback, Tracker
from wharf_storage.staging import tally
from wharf_storage.uri import StorageUri


def patterns(env: Mapping[str, str], name: str) -> list[str] | None:
    """KServe's STORAGE_ALLOW_PATTERNS / STORAGE_IGNORE_PATTERNS: a JSON list or a CSV."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list):
            return [str(v) for v in value]
    return [p.strip() for p in raw.split(",") if p.strip()]


def _model_bytes(partial: Path) -> int:
    """Bytes of the model files, without the library's `.cache` bookkeeping."""
    total = tally(partial)[1]
    if (partial / ".cache").is_dir():
        total -= tally(partial / ".cache")[1]
    return total


def cache_dir(env: Mapping[str, str]) -> str | None:
    """The Hub cache the library records refs in, from the given environment (else its default)."""
    if env.get("HF_HUB_CACHE"):
        return env["HF_HUB_CACHE"]
    if env.get("HF_HOME"):
        return str(Path(env["HF_HOME"]) / "hub")
    return None


def download_hf(
    uri: StorageUri,
    partial: Path,
    env: Mapping[str, str],
    *,
    workers: int,
    progress: ProgressCallback | None,
) -> int:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils.tqdm import disable_progress_bars

    disable_progress_bars()
    what = uri.redacted
    before = _model_bytes(partial)
    tracker = Tracker(f"download {what}", total_bytes=None, files_total=None, callback=progress)
    try:
        snapshot_download(
            repo_id=uri.repo,
            revision=uri.revision,
            local_dir=partial,
            cache_dir=cache_dir(env),
            token=env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None,
            endpoint=env.get("HF_ENDPOINT") or None,
            max_workers=max(1, workers),
            allow_patterns=patterns(env, "STORAGE_ALLOW_PATTERNS"),
            ignore_patterns=patterns(env, "STORAGE_IGNORE_PATTERNS"),
        )
    except GatedRepoError:
        raise AccessDenied(f"{what}: gated repository (set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise SourceNotFound(f"{what}: no such revision") from None
    except RepositoryNotFoundError:
        raise SourceNotFound(f"{what}: no such repository (or no access)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise AccessDenied(f"{what}: HTTP {status}") from None
        raise TransferFailed(f"{what}: HTTP {status or type(exc).__name__}") from None
    except ValueError as exc:
        # huggingface_hub refuses file names that leave local_dir.
        if "outside" in str(exc) or ".." in str(exc):
            raise UnsafePath(f"{what}: a file name leads outside the destination") from None
        raise TransferFailed(f"{what}: {type(exc).__name__}") from None
    except StorageError:
        raise
    except OSError as exc:
        raise TransferFailed(f"{what}: {type(exc).__name__}: {exc.strerror or ''}") from None
    # The library's bookkeeping (for its own resume) is not part of the model.
    shutil.rmtree(partial / ".cache", ignore_errors=True)
    files, after = tally(partial)  # .cache is gone: this is the model alone
    tracker.files_total = files
    tracker.add_bytes(max(0, after - before))
    tracker.finish()
    return max(0, after - before)
