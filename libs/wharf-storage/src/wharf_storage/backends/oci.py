"""oci:// model images ("modelcars") and OCI artifacts, through the registry HTTP API (httpx).

`oci://<registry>/<repository>[:<tag>|@<digest>]`:

- an **image** (config `application/vnd.oci.image.config.v1+json` or Docker's) is a modelcar:
  its layers are applied in order (whiteouts honoured) and the result is the content of the
  image's `/models` folder;
- anything else is an **artifact** (as `oras push` makes): each layer with an
  `org.opencontainers.image.title` annotation is a file of that name; a tar(+gzip) layer
  annotated `io.deis.oras.content.unpack: true` is a folder of that name (ORAS's convention).

Every blob's sha256 is checked as it arrives; a digest-pinned manifest is checked too. Blobs are
kept in the partial folder until the download is complete, each resumed with a Range request.
A registry on loopback (`localhost`, `127.0.0.1`, `::1`) is reached over plain HTTP, like
Docker and ORAS do; others over HTTPS (`WHARF_OCI_PLAIN_HTTP` lists more plain-HTTP hosts;
KServe's `KSERVE_OCI_INSECURE_REGISTRY=true` makes every registry plain HTTP).

Credentials, in Docker's config.json shape (`{"auths": {"<registry>": {"auth": base64(user:pw)}}}`
or `username`/`password`/`identitytoken`), the shape of a `kubernetes.io/dockerconfigjson`
Secret: `WHARF_OCI_AUTH` (the JSON itself), else the file named by `KSERVE_OCI_DOCKER_CONFIG`
(KServe's variable) or `REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`. Registries answer with a Basic or a Bearer (token service)
challenge; both are followed. A Bearer challenge's token service (`realm`) may be on another
host (Docker Hub's is auth.docker.io) but must be an http(s) URL, and credentials go to it over
plain HTTP only when it is on loopback (`realm_refusal`).

What a registry answers is read with limits: a manifest up to 4 MiB, a token service's answer
up to 64 KiB (refused from its Content-Length, else as soon as more arrives), a blob up to the
size its manifest lists; unpacking layers is bounded by `wharf_storage.expansion`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import httpx

from wharf_storage.archives import (
    TAR_EXTRACT_OPTIONS,
    TAR_FILTER_ERRORS,
    is_root,
    link_target_inside,
    unpack,
)
from wharf_storage.envs import env_flag
from wharf_storage.errors import (
    AccessDenied,
    ChecksumMismatch,
    InvalidArchive,
    SourceNotFound,
    TransferFailed,
    UnsafePath,
    UnsupportedUri,
)
from wharf_storage.expansion import ExpansionBudget, ExpansionLimits, Planned
from wharf_storage.network import backoff, no_such_host
from wharf_storage.paths import join_inside, safe_relpath
from wharf_storage.progress import ProgressCallback, Retry, Tracker
from wharf_storage.uri import StorageUri

log = logging.getLogger("wharf_storage")

WORK = ".wharf-oci"  # blobs and the unpacked tree, inside the partial folder until the end
TITLE = "org.opencontainers.image.title"
UNPACK = "io.deis.oras.content.unpack"
MODELS = "models"  # a modelcar's model folder (KServe mounts /models from the image)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
IMAGE_CONFIGS = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
}
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
MAX_MANIFEST = 4 * 1024 * 1024  # as the distribution registry's own limit for a manifest
MAX_TOKEN_ANSWER = 64 * 1024  # a token service answers a small JSON object


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str
    annotations: Mapping[str, str]

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    @property
    def compression(self) -> str | None:
        """`gz` or `` (plain tar) for tar layers, None for other media types."""
        # OCI: ...layer.v1.tar, ...tar+gzip, ...tar+zstd (also "nondistributable");
        # Docker: ...rootfs.diff.tar.gzip (also "foreign").
        mt = self.media_type
        if mt.endswith(("tar+gzip", "tar.gzip")):
            return "gz"
        if mt.endswith(("tar+zstd", "tar.zstd")):
            return "zstd"
        if mt.endswith(".tar"):
            return ""
        return None


def plain_http(host: str, env: Mapping[str, str]) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if env_flag(env, "KSERVE_OCI_INSECURE_REGISTRY", False):
        return True
    extra = {h.strip() for h in env.get("WHARF_OCI_PLAIN_HTTP", "").split(",") if h.strip()}
    return name in LOOPBACK or host in extra or name in extra


def registry_base(host: str, repo: str, env: Mapping[str, str]) -> str:
    """`<scheme>://<api host>/v2/<repository>`; Docker Hub's names as Docker expands them."""
    if host.lower() in ("docker.io", "index.docker.io"):
        host = "registry-1.docker.io"
        if "/" not in repo:
            repo = f"library/{repo}"
    scheme = "http" if plain_http(host, env) else "https"
    return f"{scheme}://{host}/v2/{repo}"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def realm_refusal(realm: str, *, with_credentials: bool) -> str | None:
    """Why a Bearer challenge's token service `realm` must not be asked, or None (pure).

    The rule: the realm is an absolute http(s) URL (any host: token services are often on
    another host than the registry); with credentials, plain `http` only to a loopback host
    (`localhost`, 127.0.0.0/8, `::1`), since anything else would carry the password in clear.
    """
    try:
        url = httpx.URL(realm)
    except (httpx.InvalidURL, TypeError):
        return f"the token service realm {realm[:200]!r} is not a URL"
    shown = str(url.copy_with(query=None, fragment=None, userinfo=b""))[:200]
    if url.scheme not in ("http", "https") or not url.host:
        return f"the token service realm {shown!r} is not an http(s) URL"
    if with_credentials and url.scheme == "http" and not is_loopback(url.host):
        return (
            f"the token service realm {shown!r} is plain HTTP on a host that is not loopback; "
            "credentials are sent to a realm only over https, or over http to localhost, "
            "127.0.0.0/8 or ::1"
        )
    return None


def read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """The streamed `response`'s body, or None once it is known to exceed `limit` bytes: from
    its Content-Length before reading anything, else as soon as more has arrived (so at most
    `limit` plus one network chunk is held). The caller closes the response."""
    try:
        announced = int(response.headers.get("content-length", ""))
    except ValueError:
        announced = None
    if announced is not None and announced > limit:
        return None
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _auth_file(env: Mapping[str, str]) -> dict[str, Any] | None:
    raw = env.get("WHARF_OCI_AUTH")
    if not raw:
        for path in (
            env.get("KSERVE_OCI_DOCKER_CONFIG"),
            env.get("REGISTRY_AUTH_FILE"),
            os.path.join(env["DOCKER_CONFIG"], "config.json") if env.get("DOCKER_CONFIG") else None,
        ):
            if path and os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    raw = f.read()
                break
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise AccessDenied("registry credentials are not valid JSON (docker config.json)") from None
    return value if isinstance(value, dict) else None


def _registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `index.docker.io`; `reg:5000` stays."""
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0].lower()


def registry_credentials(env: Mapping[str, str], host: str) -> tuple[str, str] | None:
    """(username, password) for `host` from a docker config.json, or None (anonymous).

    An `identitytoken` is returned as ("<token>", token), which token services accept as a
    refresh token (Docker's convention).
    """
    config = _auth_file(env)
    if not config:
        return None
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    wanted = {host.lower()}
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        wanted |= {"docker.io", "registry-1.docker.io", "index.docker.io"}
    for key, entry in auths.items():
        if _registry_key(str(key)) not in wanted or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return "<token>", str(entry["identitytoken"])
        if entry.get("username") and entry.get("password") is not None:
            return str(entry["username"]), str(entry["password"])
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AccessDenied(f"registry credentials for {host}: bad 'auth' value") from None
            return user, password
    return None


class _Cancelled(Exception):
    """Stops a blob transfer when another one failed."""


class _Retry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Registry:
    """The pull side of the OCI distribution API for one repository, with auth challenges."""

    def __init__(self, uri: StorageUri, env: Mapping[str, str]) -> None:
        self.uri = uri
        self.what = uri.redacted
        self.base = registry_base(uri.host, uri.repo, env)
        self.credentials = registry_credentials(env, uri.host)
        verify = env_flag(env, "WHARF_OCI_VERIFY_SSL", True)
        self.client = httpx.Client(timeout=60.0, follow_redirects=True, verify=verify)
        self.authorization: str | None = None

    def close(self) -> None:
        self.client.close()

    def _challenge(self, response: httpx.Response) -> None:
        header = response.headers.get("www-authenticate", "")
        kind, _, params_text = header.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        if kind.lower() == "basic":
            if self.credentials is None:
                raise AccessDenied(f"{self.what}: the registry asks for credentials")
            user, password = self.credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.authorization = f"Basic {token}"
            return
        if kind.lower() != "bearer" or "realm" not in params:
            raise AccessDenied(f"{self.what}: HTTP 401 with an unknown challenge")
        realm = params["realm"]
        refused = realm_refusal(realm, with_credentials=self.credentials is not None)
        if refused is not None:
            raise AccessDenied(f"{self.what}: {refused}")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or f"repository:{self.uri.repo}:pull"
        auth = None
        if self.credentials is not None:
            auth = httpx.BasicAuth(*self.credentials)
        try:
            with self.client.stream("GET", realm, params=query, auth=auth) as answer:
                status = answer.status_code
                raw = read_limited(answer, MAX_TOKEN_ANSWER) if status == 200 else b""
        except httpx.TransportError as exc:
            raise _Retry(f"token service: {type(exc).__name__}") from None
        if status in (401, 403):
            raise AccessDenied(f"{self.what}: the token service refused the credentials")
        if status >= 500 or status == 429:
            raise _Retry(f"token service: HTTP {status}")
        if status != 200:
            raise AccessDenied(f"{self.what}: token service answered HTTP {status}")
        if raw is None:
            raise AccessDenied(
                f"{self.what}: the token service's answer is larger than "
                f"{MAX_TOKEN_ANSWER // 1024} KiB"
            )
        try:
            body = json.loads(raw)
            token = str(body.get("token") or body.get("access_token"))
        except (ValueError, AttributeError):
            raise AccessDenied(f"{self.what}: the token service's answer is not JSON") from None
        self.authorization = f"Bearer {token}"

    def open(self, path: str, headers: Mapping[str, str]) -> httpx.Response:
        """A streamed GET of `<base>/<path>`, answering one auth challenge. Caller closes."""
        for _ in range(2):
            request_headers = dict(headers)
            if self.authorization:
                request_headers["Authorization"] = self.authorization
            request = self.client.build_request(
                "GET", f"{self.base}/{path}", headers=request_headers
            )
            response = self.client.send(request, stream=True)
            if response.status_code != 401:
                return response
            response.close()
            if self.authorization is not None and self.authorization.startswith("Basic"):
                break
            had = self.authorization
            self._challenge(response)
            if had == self.authorization:
                break
        raise AccessDenied(f"{self.what}: HTTP 401 (credentials missing or refused)")

    def check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 300:
            return
        response.close()
        if status == 403:
            raise AccessDenied(f"{self.what}: {what}: HTTP 403")
        if status == 404:
            raise SourceNotFound(f"{self.what}: {what}: not found (HTTP 404)")
        if status >= 500 or status in (408, 429):
            raise _Retry(f"HTTP {status}")
        raise TransferFailed(f"{self.what}: {what}: HTTP {status}")


class OciDownload:
    def __init__(
        self,
        uri: StorageUri,
        env: Mapping[str, str],
        *,
        attempts: int,
        progress: ProgressCallback | None,
        workers: int = 4,
    ) -> None:
        assert uri.revision is not None
        self.uri = uri
        self.what = uri.redacted
        self.env = env
        self.attempts = max(1, attempts)
        self.progress = progress
        self.platform = env.get("WHARF_OCI_PLATFORM", "linux/amd64")
        self.registry = Registry(uri, env)
        self.tracker: Tracker | None = None
        self.workers = max(1, workers)
        self.cancel = threading.Event()
        self.budget = ExpansionBudget(ExpansionLimits.from_env(env))

    # --- retries ------------------------------------------------------------------------

    def _retrying(self, label: str, action: Any) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except httpx.TransportError as exc:
                if no_such_host(exc):
                    raise TransferFailed(
                        f"{self.what}: the registry's host does not resolve"
                    ) from None
                reason = type(exc).__name__
            except _Retry as exc:
                reason = exc.reason
            if attempt == self.attempts:
                raise TransferFailed(
                    f"{self.what}: {label}: failed after {attempt} attempts: {reason}"
                ) from None
            delay = backoff(attempt)
            retry = Retry(label, attempt, self.attempts, reason, delay)
            if self.tracker is not None:
                self.tracker.retry(retry)
            else:
                log.warning("%s: %s: attempt %d failed (%s)", self.what, label, attempt, reason)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- manifests ----------------------------------------------------------------------

    def _get_manifest(self, ref: str) -> tuple[str, dict[str, Any]]:
        def once() -> tuple[str, bytes, str | None]:
            response = self.registry.open(f"manifests/{ref}", {"Accept": ACCEPT})
            try:
                self.registry.check(response, f"manifest {ref}")
                body = read_limited(response, MAX_MANIFEST)
            finally:
                response.close()
            if body is None:
                raise InvalidArchive(
                    f"{self.what}: manifest {ref} is larger than {MAX_MANIFEST // 2**20} MiB"
                )
            media = response.headers.get("content-type", "").split(";")[0].strip()
            return media, body, response.headers.get("docker-content-digest")

        media, body, header_digest = self._retrying(f"manifest {ref}", once)
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = ref if ref.startswith("sha256:") else header_digest
        if expected and expected.startswith("sha256:") and expected != actual:
            raise ChecksumMismatch(f"{self.what}: manifest digest {actual} differs from {expected}")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise InvalidArchive(f"{self.what}: manifest {ref} is not JSON") from None
        if not isinstance(manifest, dict):
            raise InvalidArchive(f"{self.what}: manifest {ref} is not a JSON object")
        return str(manifest.get("mediaType") or media), manifest

    def _resolve(self) -> dict[str, Any]:
        assert self.uri.revision is not None
        media, manifest = self._get_manifest(self.uri.revision)
        if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
            wanted_os, _, wanted_arch = self.platform.partition("/")
            choices = [m for m in manifest.get("manifests", []) if isinstance(m, dict)]
            matching = [
                m
                for m in choices
                if (m.get("platform") or {}).get("os") == wanted_os
                and (m.get("platform") or {}).get("architecture") == wanted_arch
            ]
            if not matching and len(choices) == 1:
                matching = choices
            if not matching:
                raise SourceNotFound(
                    f"{self.what}: the index has no manifest for {self.platform} "
                    "(set WHARF_OCI_PLATFORM)"
                )
            entry = matching[0]
            digest = str(entry.get("digest", ""))
            if not _DIGEST.match(digest):
                raise UnsupportedUri(f"{self.what}: index entry digest {digest!r} unsupported")
            media, manifest = self._get_manifest(digest)
        if media not in (OCI_MANIFEST, DOCKER_MANIFEST) and "layers" not in manifest:
            raise UnsupportedUri(f"{self.what}: unsupported manifest type {media!r}")
        return manifest

    @staticmethod
    def _layers(what: str, manifest: Mapping[str, Any]) -> list[Layer]:
        layers = []
        for entry in manifest.get("layers") or []:
            digest = str(entry.get("digest", ""))
            if not _DIGEST.match(digest):
                raise UnsupportedUri(f"{what}: layer digest {digest[:80]!r} is not sha256")
            try:
                size = int(entry.get("size"))
            except (TypeError, ValueError):
                raise InvalidArchive(f"{what}: layer {digest} has no size") from None
            annotations = entry.get("annotations") or {}
            layers.append(
                Layer(
                    digest,
                    size,
                    str(entry.get("mediaType", "")),
                    {str(k): str(v) for k, v in annotations.items()},
                )
            )
        if not layers:
            raise SourceNotFound(f"{what}: the manifest has no layers")
        return layers

    # --- blobs --------------------------------------------------------------------------

    def _fetch_blob(self, layer: Layer, final: Path) -> None:
        """`final` holds the blob, its digest checked; resumes `final.wharf-tmp`."""
        assert self.tracker is not None
        tracker = self.tracker
        if (
            final.is_file()
            and not final.is_symlink()
            and final.stat().st_size == layer.size
            and _sha256(final) == layer.hex
        ):
            tracker.add_bytes(layer.size, fetched=False)
            tracker.file_done()
            return
        tmp = final.with_name(final.name + ".wharf-tmp")
        final.parent.mkdir(parents=True, exist_ok=True)

        def once() -> None:
            have = tmp.stat().st_size if tmp.exists() else 0
            if have > layer.size:
                tmp.unlink()
                have = 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            if have == layer.size:
                return
            response = self.registry.open(f"blobs/{layer.digest}", headers)
            counted = 0
            try:
                if response.status_code == 416 and have:
                    tmp.unlink()
                    raise _Retry("HTTP 416")
                self.registry.check(response, f"blob {layer.digest}")
                resumed = response.status_code == 206 and have > 0
                if resumed:
                    tracker.add_bytes(have, fetched=False)
                    counted += have
                with open(tmp, "ab" if resumed else "wb") as f:
                    for chunk in response.iter_bytes():
                        if self.cancel.is_set():
                            raise _Cancelled()
                        f.write(chunk)
                        counted += len(chunk)
                        tracker.add_bytes(len(chunk))
                        if f.tell() > layer.size:
                            break
            except (httpx.TransportError, _Retry):
                tracker.add_bytes(-counted, fetched=False)
                raise
            finally:
                response.close()
            size = tmp.stat().st_size
            if size < layer.size:
                tracker.add_bytes(-counted, fetched=False)
                raise _Retry(f"short read: {size} of {layer.size} bytes")

        self._retrying(f"blob {layer.digest}", once)
        size = tmp.stat().st_size
        actual = _sha256(tmp)
        if size != layer.size or actual != layer.hex:
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{self.what}: blob {layer.digest}: got sha256:{actual} ({size} bytes), "
                f"the manifest lists {layer.size} bytes"
            )
        os.replace(tmp, final)
        tracker.file_done()

    # --- the whole pull -----------------------------------------------------------------

    def run(self, partial: Path) -> int:
        try:
            return self._run(partial)
        finally:
            self.registry.close()

    def _run(self, partial: Path) -> int:
        manifest = self._resolve()
        layers = self._layers(self.what, manifest)
        config_type = str((manifest.get("config") or {}).get("mediaType", ""))
        is_image = config_type in IMAGE_CONFIGS and not manifest.get("artifactType")
        named = [] if is_image else self._named(layers)
        fetched = layers if is_image else [layer for layer, _ in named]
        self.tracker = Tracker(
            f"download {self.what}",
            total_bytes=sum(layer.size for layer in fetched),
            files_total=len(fetched),
            callback=self.progress,
        )
        work = partial / WORK
        blobs = work / "blobs"
        if is_image:
            for layer in layers:
                if layer.compression is None or layer.compression == "zstd":
                    raise UnsupportedUri(
                        f"{self.what}: layer media type {layer.media_type!r} is not a tar or "
                        "gzip tar layer"
                    )
            self._fetch_all([(layer, blobs / layer.hex) for layer in layers])
            tree = work / "tree"
            if tree.exists():
                shutil.rmtree(tree)
            tree.mkdir(parents=True)
            try:
                for layer in layers:
                    compression = layer.compression or ""
                    apply_layer(blobs / layer.hex, compression, tree, self.what, self.budget)
            except BaseException:
                # What the layers wrote goes (it may be most of a disk); the blobs stay for
                # a resume.
                shutil.rmtree(tree, ignore_errors=True)
                raise
            if not any(tree.iterdir()):
                raise SourceNotFound(f"{self.what}: the image has no files under /{MODELS}")
            _move_up(tree, partial)
        else:
            self._pull_artifact(named, partial, blobs)
        shutil.rmtree(work, ignore_errors=True)
        self.tracker.finish()
        return self.tracker.fetched_bytes

    def _fetch_all(self, jobs: list[tuple[Layer, Path]]) -> None:
        """Fetch blobs in parallel (largest first); the first failure stops the others."""
        unique = list({path: (layer, path) for layer, path in jobs}.values())
        unique.sort(key=lambda job: -job[0].size)
        if self.workers == 1 or len(unique) <= 1:
            for layer, path in unique:
                self._fetch_blob(layer, path)
            return
        workers = min(self.workers, len(unique))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wharf-oci") as pool:
            futures = [pool.submit(self._fetch_blob, layer, path) for layer, path in unique]
            done, not_done = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                self.cancel.set()
                for f in not_done:
                    f.cancel()
                wait(not_done)
                errors = [
                    f.exception()
                    for f in futures
                    if not f.cancelled() and f.exception() is not None
                ]
                first = next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
                assert first is not None
                raise first

    def _named(self, layers: list[Layer]) -> list[tuple[Layer, PurePosixPath]]:
        named = []
        for layer in layers:
            title = layer.annotations.get(TITLE)
            if not title:
                log.info("%s: layer %s has no title annotation: skipped", self.what, layer.digest)
                continue
            rel = safe_relpath(title, what="artifact file name")
            if rel.parts[0] == WORK:
                raise UnsafePath(f"{self.what}: artifact file name {title!r} is reserved")
            named.append((layer, rel))
        if not named:
            raise SourceNotFound(f"{self.what}: the artifact has no titled layers (files)")
        files = {rel for _, rel in named}
        for _, rel in named:
            for parent in rel.parents:
                if parent in files:
                    raise UnsafePath(f"{self.what}: {parent} is both a file and a folder")
        return named

    def _pull_artifact(
        self, named: list[tuple[Layer, PurePosixPath]], partial: Path, blobs: Path
    ) -> None:
        jobs = []
        folders = []
        for layer, rel in named:
            if env_flag(layer.annotations, UNPACK, False):
                jobs.append((layer, blobs / layer.hex))
                folders.append((layer, rel))
            else:
                jobs.append((layer, join_inside(partial, rel, what="artifact file name")))
        self._fetch_all(jobs)
        written: list[Path] = []
        try:
            for layer, rel in folders:
                target = join_inside(partial, rel, what="artifact folder")
                if target.exists():
                    shutil.rmtree(target)
                target.mkdir(parents=True)
                written.append(target)
                kind = "tar.gz" if layer.compression == "gz" else "tar"
                unpack(
                    blobs / layer.hex, kind, target, name=f"{self.what}: {rel}", budget=self.budget
                )
        except BaseException:
            for target in written:
                shutil.rmtree(target, ignore_errors=True)
            raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _move_up(tree: Path, partial: Path) -> None:
    for entry in os.listdir(tree):
        target = partial / entry
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(tree / entry, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _under_models(name: str, what: str) -> PurePosixPath | None:
    """The member's path below `/models`, None for members elsewhere (or the folder itself)."""
    if is_root(name):
        return None
    rel = safe_relpath(name, what=f"{what}: layer member")
    if rel.parts[0] != MODELS or len(rel.parts) == 1:
        return None
    return PurePosixPath(*rel.parts[1:])


def _check_link(member: tarfile.TarInfo, rel: PurePosixPath, what: str) -> None:
    target = member.linkname
    if member.islnk():
        linked = _under_models(target, what)
        if linked is None:
            raise UnsafePath(f"{what}: hard link {member.name!r} points outside /{MODELS}")
        target = str(linked)
    if not link_target_inside(rel, target, hard=member.islnk()):
        raise UnsafePath(
            f"{what}: link member {member.name!r} points outside the destination "
            f"({member.linkname!r})"
        )


def _plan_layer(
    tf: tarfile.TarFile, tree: Path, what: str, budget: ExpansionBudget, label: str
) -> tuple[list[tuple[tarfile.TarInfo, PurePosixPath]], Planned]:
    """Check every member and apply the layer's whiteouts; return what to extract and what
    that writes (refused as soon as it is sure to exceed the expansion limits)."""
    plan: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
    planned = Planned()
    block = budget.block_size(tree)
    room = budget.room(tree)
    for member in tf:  # header by header: a refusal does not inflate the rest first
        rel = _under_models(member.name, what)
        if rel is None:
            continue
        base = rel.name
        if base == _OPAQUE:
            folder = join_inside(tree, rel.parent, what="layer member")
            if folder.is_dir() and not folder.is_symlink():
                for child in list(folder.iterdir()):
                    _remove(child)
            continue
        if base.startswith(_WHITEOUT):
            hidden = base[len(_WHITEOUT) :]
            if hidden in ("", ".", ".."):
                raise UnsafePath(f"{what}: whiteout {member.name!r} names no entry")
            gone = safe_relpath(str(rel.parent / hidden), what=f"{what}: whiteout")
            _remove(join_inside(tree, gone, what="layer member"))
            continue
        if member.issym() or member.islnk():
            _check_link(member, rel, what)
        elif not (member.isfile() or member.isdir()):
            raise UnsafePath(f"{what}: member {member.name!r} is a device or fifo")
        plan.append((member, rel))
        planned = planned.plus(member.size if member.isfile() else None, block)
        budget.early_check(planned, name=label, where=tree, room=room)
    return plan, planned


def apply_layer(
    blob: Path, compression: str, tree: Path, what: str, budget: ExpansionBudget | None = None
) -> None:
    """Apply one image layer's `/models` part to `tree`, as an overlay would.

    Every member name in the layer is checked (a `..` or an absolute name anywhere refuses the
    layer); members under `models/` are applied: `.wh.<name>` deletes `<name>` from the layers
    below, `.wh..wh..opq` empties its folder, links must stay inside the model folder, devices
    and fifos are refused, and an entry replaces what lower layers had at its path (a file is
    never written through a link). Nothing of the layer is written when it would exceed
    `budget` (TransferFailed).
    """
    budget = budget or ExpansionBudget(ExpansionLimits())
    mode: Literal["r:gz", "r:"] = "r:gz" if compression == "gz" else "r:"
    try:
        with tarfile.open(blob, mode) as tf:
            label = f"{what}: layer sha256:{blob.name}"
            plan, planned = _plan_layer(tf, tree, what, budget, label)
            budget.check(planned, name=label, where=tree)
            for member, rel in plan:
                dest = join_inside(tree, rel, what="layer member")
                if not member.isdir() or dest.is_symlink() or (dest.exists() and not dest.is_dir()):
                    _remove(dest)
                # a renamed copy (TarInfo.replace needs Python 3.11.4)
                entry = copy.copy(member)
                entry.name = str(rel)
                if member.islnk():
                    entry.linkname = str(_under_models(member.linkname, what))
                tf.extract(entry, tree, **TAR_EXTRACT_OPTIONS)
                if member.isfile():
                    os.chmod(dest, stat.S_IMODE(member.mode) | 0o600)
        budget.commit(planned)
    except (UnsafePath, SourceNotFound, TransferFailed):
        raise
    except TAR_FILTER_ERRORS as exc:
        raise UnsafePath(f"{what}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArchive(f"{what}: cannot apply a layer: {type(exc).__name__}") from None
