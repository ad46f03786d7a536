"""The webhook server on loopback over real TLS: reviews answered, limits kept, a renewed
certificate served without a restart."""

from __future__ import annotations

import io
import json
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wharf_controller.webhook.server import MAX_BODY_BYTES, WebhookServer, tls_context

sys.path.insert(0, str(Path(__file__).parent))
from webhook_tls import WebhookCA, issue_serving_cert, make_ca


def _client_ssl(ca: WebhookCA) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca.pem.decode())
    return context


@pytest.fixture
def ca() -> WebhookCA:
    return make_ca()


@pytest.fixture
async def server(tmp_path: Path, ca: WebhookCA) -> AsyncIterator[WebhookServer]:
    issue_serving_cert(ca, tmp_path / "certs")
    srv = WebhookServer(tmp_path / "certs", host="127.0.0.1", port=0, poll_seconds=3600)
    await srv.start()
    yield srv
    await srv.stop()


async def _post(
    srv: WebhookServer, ca: WebhookCA, path: str, body: Any, **kwargs: Any
) -> tuple[int, Any]:
    url = f"https://127.0.0.1:{srv.port}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, ssl=_client_ssl(ca), **kwargs) as response,
    ):
        text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def _review(obj: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "object": obj},
    }


INVALID_ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "iris"},
    "spec": {"predictor": {"minReplicas": 1}},
}


async def test_reviews_are_answered_over_tls(server: WebhookServer, ca: WebhookCA) -> None:
    status, body = await _post(
        server, ca, "/validate-serving-kserve-io-v1beta1-inferenceservice", _review(INVALID_ISVC)
    )
    assert status == 200
    assert body["response"]["allowed"] is False
    assert "spec.predictor" in body["response"]["status"]["message"]


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    server: WebhookServer, ca: WebhookCA
) -> None:
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _post(server, make_ca(), "/convert", {})


async def test_malformed_bodies_are_400_and_unknown_paths_404(
    server: WebhookServer, ca: WebhookCA
) -> None:
    status, body = await _post(server, ca, "/convert", {"kind": "ConversionReview"})
    assert status == 400 and "apiVersion" in body["error"]
    status, _ = await _post(server, ca, "/mutate-anything", _review(INVALID_ISVC))
    assert status in (404, 405)
    status, body = await _post(
        server, ca, "/convert", None, data=b"{", headers={"Content-Type": "application/json"}
    )
    assert status == 400


async def test_a_body_over_the_limit_is_refused(server: WebhookServer, ca: WebhookCA) -> None:
    huge = json.dumps(_review({**INVALID_ISVC, "pad": "x" * MAX_BODY_BYTES})).encode()
    status, _ = await _post(
        server,
        ca,
        "/validate-serving-kserve-io-v1beta1-inferenceservice",
        None,
        data=io.BytesIO(huge),
        headers={"Content-Type": "application/json"},
    )
    assert status == 413


async def test_a_renewed_certificate_is_served_without_a_restart(
    server: WebhookServer, ca: WebhookCA
) -> None:
    assert server.reload_if_changed() is False  # nothing changed yet
    renewed = make_ca("renewed-ca")
    issue_serving_cert(renewed, server.cert_dir)
    assert server.reload_if_changed() is True
    status, _ = await _post(server, renewed, "/convert", {})
    assert status == 400  # reached the handler over the new certificate
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _post(server, ca, "/convert", {})


async def test_a_half_written_pair_keeps_the_old_certificate(
    server: WebhookServer, ca: WebhookCA, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    issue_serving_cert(make_ca(), other)
    (server.cert_dir / "tls.key").write_bytes((other / "tls.key").read_bytes())  # key only
    assert server.reload_if_changed() is False
    status, _ = await _post(server, ca, "/convert", {})
    assert status == 400


def test_a_missing_certificate_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tls\.crt"):
        tls_context(tmp_path)


def test_run_takes_the_webhook_flags(tmp_path: Path) -> None:
    from wharf_controller.__main__ import parser

    args = parser().parse_args(
        ["run", f"--webhook-cert-dir={tmp_path}", "--webhook-port=8443", "--webhook-host=::"]
    )
    assert (args.webhook_cert_dir, args.webhook_port, args.webhook_host) == (tmp_path, 8443, "::")
    defaults = parser().parse_args(["run"])
    assert defaults.webhook_cert_dir is None and defaults.webhook_port == 9443
