"""The webhook server: aiohttp over TLS, the pure review functions behind each path.

The certificate is read from `DIR/tls.crt` and `DIR/tls.key` (as cert-manager's Secret is
mounted) and read again when either file changes, so a renewed certificate is served without a
restart: new TLS handshakes use it, open connections keep theirs. The new pair is loaded into a
fresh context (a half-written pair fails to load and the old one stays), and the listening
context hands each handshake to the newest one from its ClientHello callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from wharf_controller.webhook.admission import BadReview, mutate_review, validate_review
from wharf_controller.webhook.conversion_review import BadConversionReview, convert_review

log = logging.getLogger(__name__)

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
# An AdmissionReview carries the object and the old object; etcd stores at most 1.5 MiB each.
MAX_BODY_BYTES = 4 * 1024 * 1024
CERT_POLL_SECONDS = 10.0

Review = Callable[[Any], dict[str, Any]]

# KServe's paths (kubebuilder's `/{mutate,validate}-{group}-{version}-{kind}`), plus `/convert`.
# Every validating path runs the same checks: wharf_api dispatches on the object's kind.
VALIDATE_PATHS = (
    "/validate-serving-kserve-io-v1beta1-inferenceservice",
    "/validate-serving-kserve-io-v1alpha1-servingruntime",
    "/validate-serving-kserve-io-v1alpha1-clusterservingruntime",
    "/validate-serving-kserve-io-v1alpha1-inferencegraph",
    "/validate-serving-kserve-io-v1alpha2-llminferenceservice",
    "/validate-serving-kserve-io-v1alpha2-llminferenceserviceconfig",
)
MUTATE_PATHS = ("/mutate-serving-kserve-io-v1beta1-inferenceservice",)
CONVERT_PATH = "/convert"


def routes() -> dict[str, Review]:
    table: dict[str, Review] = {path: validate_review for path in VALIDATE_PATHS}
    table.update({path: mutate_review for path in MUTATE_PATHS})
    table[CONVERT_PATH] = convert_review
    return table


def _handler(review: Review) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response({"error": "Content-Type must be application/json"}, status=415)
        try:
            body = json.loads(await request.read())
            answer = review(body)
        except (ValueError, BadReview, BadConversionReview) as exc:  # JSONDecodeError is one
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(answer)

    return handle


def webhook_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    for path, review in routes().items():
        app.router.add_post(path, _handler(review))
    return app


def _stamp(cert_dir: Path) -> tuple[float, ...]:
    stats = [(cert_dir / name).stat() for name in (CERT_FILE, KEY_FILE)]
    return tuple(x for s in stats for x in (s.st_mtime_ns, s.st_size, s.st_ino))


def tls_context(cert_dir: Path) -> ssl.SSLContext:
    """A server context with the key pair in `cert_dir`; raises naming the file that is missing."""
    for name in (CERT_FILE, KEY_FILE):
        if not (cert_dir / name).is_file():
            raise FileNotFoundError(f"webhook certificate: {cert_dir / name} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_dir / CERT_FILE, cert_dir / KEY_FILE)
    return context


@dataclass
class WebhookServer:
    """Serves the webhooks on `host:port` (port 0: any free port, see `port` once started)."""

    cert_dir: Path
    host: str = "0.0.0.0"
    port: int = 9443
    poll_seconds: float = CERT_POLL_SECONDS
    reloads: int = 0
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _watch: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._current = tls_context(self.cert_dir)
        self._stamp = _stamp(self.cert_dir)
        self._context = tls_context(self.cert_dir)
        self._context.sni_callback = self._use_current
        self._runner = web.AppRunner(webhook_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._context)
        await site.start()
        server = site._server  # aiohttp exposes no public way to read the bound port
        if self.port == 0 and isinstance(server, asyncio.Server) and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        self._watch = asyncio.create_task(self._reload_on_change())
        log.info("webhooks serving on %s:%d with %s", self.host, self.port, self.cert_dir)

    def reload_if_changed(self) -> bool:
        """Load the key pair again when the files changed; True when it did."""
        try:
            stamp = _stamp(self.cert_dir)
            if stamp == self._stamp:
                return False
            current = tls_context(self.cert_dir)
        except (OSError, ssl.SSLError) as exc:
            # mid-rotation (one file written, not yet the other): keep serving the old pair
            log.warning("webhook certificate not reloaded: %s", exc)
            return False
        self._current = current
        self._stamp = stamp
        self.reloads += 1
        log.info("webhook certificate reloaded from %s", self.cert_dir)
        return True

    def _use_current(self, conn: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        # called for every ClientHello (with or without a server name)
        conn.context = self._current

    async def _reload_on_change(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self.reload_if_changed()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._runner is not None:
            await self._runner.cleanup()
