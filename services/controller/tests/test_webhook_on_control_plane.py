"""The webhooks of `wharf-controller run` behind a real API server: admission (defaulting,
validation naming the field, deployment-mode immutability) and LLMInferenceService conversion
between the served v1alpha1 and the stored v1alpha2.

The API server runs on loopback, so the webhook configurations and the CRD's conversion stanza
point at `https://127.0.0.1:PORT/...` with the test CA as caBundle (in a cluster: the Service and
cert-manager's CA). The admission webhooks only see this test's namespace, and everything
cluster-wide is put back afterwards, because the control plane is shared by the whole run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from wharf_api.conversion import LORA_CRITICALITIES_ANNOTATION, MODEL_CRITICALITY_ANNOTATION
from wharf_controller.webhook.server import WebhookServer
from wharf_e2e.kube import Kube, KubeError, wait_for
from wharf_e2e.testing import free_port

sys.path.insert(0, str(Path(__file__).parent))
from webhook_tls import WebhookCA, issue_serving_cert, make_ca

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]

CRD_DIR = Path(__file__).resolve().parents[3] / "deploy" / "base" / "crds"
ISVC_CRD = CRD_DIR / "serving.kserve.io_inferenceservices.yaml"
LLM_CRD = CRD_DIR / "serving.kserve.io_llminferenceservices.yaml"
LLM_CRD_NAME = "llminferenceservices.serving.kserve.io"
ISVC = "serving.kserve.io/v1beta1"
V1ALPHA1 = "serving.kserve.io/v1alpha1"
V1ALPHA2 = "serving.kserve.io/v1alpha2"
MODE = "serving.kserve.io/deploymentMode"


@dataclass(frozen=True)
class Webhooks:
    namespace: str
    port: int
    ca: WebhookCA


def _crd(path: Path) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    return crd


async def _install(kube: Kube, crd: dict[str, Any]) -> None:
    # the same field manager as every other test's CRD install, so a later install of the
    # generated CRD takes the loopback URL back out
    await kube.install_crd(crd)


async def _serving(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"https://127.0.0.1:{port}/convert", json={}, ssl=False) as response,
        ):
            return response.status == 400
    except aiohttp.ClientError:
        return False


def _client_config(hooks: Webhooks, path: str) -> dict[str, Any]:
    return {
        "url": f"https://127.0.0.1:{hooks.port}{path}",
        "caBundle": base64.b64encode(hooks.ca.pem).decode(),
    }


def _webhook(
    hooks: Webhooks, name: str, path: str, resources: list[str], versions: list[str]
) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": _client_config(hooks, path),
        "rules": [
            {
                "apiGroups": ["serving.kserve.io"],
                "apiVersions": versions,
                "operations": ["CREATE", "UPDATE"],
                "resources": resources,
            }
        ],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": hooks.namespace}},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
    }


def _configurations(hooks: Webhooks) -> list[dict[str, Any]]:
    name = f"wharf-test-{hooks.namespace}"
    mutating = _webhook(
        hooks,
        "inferenceservice.kserve-webhook-server.defaulter",
        "/mutate-serving-kserve-io-v1beta1-inferenceservice",
        ["inferenceservices"],
        ["v1beta1"],
    )
    mutating["reinvocationPolicy"] = "Never"
    validating = [
        _webhook(
            hooks,
            "inferenceservice.kserve-webhook-server.validator",
            "/validate-serving-kserve-io-v1beta1-inferenceservice",
            ["inferenceservices"],
            ["v1beta1"],
        ),
        # registered for the stored version only: a v1alpha1 object reaches it converted
        _webhook(
            hooks,
            "llminferenceservice.kserve-webhook-server.validator",
            "/validate-serving-kserve-io-v1alpha2-llminferenceservice",
            ["llminferenceservices"],
            ["v1alpha2"],
        ),
    ]
    for hook in validating:
        hook["matchPolicy"] = "Equivalent"
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [mutating],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": validating,
        },
    ]


def _llm_crd_with_loopback_conversion(hooks: Webhooks) -> dict[str, Any]:
    crd = _crd(LLM_CRD)
    crd["spec"]["conversion"]["webhook"]["clientConfig"] = _client_config(hooks, "/convert")
    return crd


def _message(exc: KubeError | ApiException) -> str:
    if isinstance(exc, KubeError):
        return exc.message
    return str(json.loads(exc.body).get("message", exc.body)) if exc.body else str(exc)


async def _refused(create: Awaitable[Any]) -> str:
    """The API server's refusal message; fails when the request was accepted."""
    try:
        await create
    except (KubeError, ApiException) as exc:
        return _message(exc)
    raise AssertionError("the API server accepted what the webhook should have refused")


def _isvc(name: str, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {MODE: "RawDeployment"}},
        "spec": {"predictor": predictor or {"sklearn": {"storageUri": "gs://bucket/iris"}}},
    }


@contextlib.asynccontextmanager
async def _configured(kube: Kube, hooks: Webhooks) -> AsyncIterator[Webhooks]:
    """Webhook configurations and the LLM CRD's conversion pointed at `hooks`, then put back."""
    configurations = _configurations(hooks)
    try:
        await wait_for(partial(_serving, hooks.port), "the webhook server", within=60)
        for configuration in configurations:
            await kube.apply(configuration)
        await _install(kube, _llm_crd_with_loopback_conversion(hooks))
        yield hooks
    finally:
        for configuration in configurations:
            meta = configuration["metadata"]
            # not there when the setup failed before creating it
            with contextlib.suppress(KubeError, ApiException):
                await kube.delete(configuration["apiVersion"], configuration["kind"], meta["name"])
        await _install(kube, _crd(LLM_CRD))


@pytest.fixture
async def cli_webhooks(
    kube: Kube, kube_cluster: Any, kube_namespace: str, tmp_path: Path
) -> AsyncIterator[Webhooks]:
    """The webhooks as `wharf-controller run --webhook-cert-dir ...` serves them."""
    ca = make_ca()
    issue_serving_cert(ca, tmp_path / "certs")
    hooks = Webhooks(kube_namespace, free_port(), ca)
    await _install(kube, _crd(ISVC_CRD))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wharf_controller",
        "run",
        f"--kubeconfig={kube_cluster.kubeconfig}",
        f"--namespace={kube_namespace}",
        f"--metrics-port={free_port()}",
        "--metrics-host=127.0.0.1",
        f"--webhook-cert-dir={tmp_path / 'certs'}",
        f"--webhook-port={hooks.port}",
        "--webhook-host=127.0.0.1",
        "--no-leader-elect",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with _configured(kube, hooks):
            yield hooks
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)


@pytest.fixture
async def webhooks(kube: Kube, kube_namespace: str, tmp_path: Path) -> AsyncIterator[Webhooks]:
    """The same server in this process (starting a second controller costs seconds)."""
    ca = make_ca()
    issue_serving_cert(ca, tmp_path / "certs")
    server = WebhookServer(tmp_path / "certs", host="127.0.0.1", port=0)
    await server.start()
    try:
        async with _configured(kube, Webhooks(kube_namespace, server.port, ca)) as hooks:
            yield hooks
    finally:
        await server.stop()


async def test_admission_defaults_rejects_naming_the_field_and_freezes_the_mode(
    kube: Kube, cli_webhooks: Webhooks
) -> None:
    ns = cli_webhooks.namespace

    # the webhook configuration reaches the API server's informer a moment after it is written
    async def invalid_refused() -> str:
        try:
            await kube.create(_isvc("probe", minReplicas=1), namespace=ns)
        except (KubeError, ApiException) as exc:
            message = _message(exc)
            return message if "denied the request" in message else ""
        await kube.delete(ISVC, "InferenceService", "probe", ns)
        return ""

    message = await wait_for(invalid_refused, "the validating webhook in force", within=60)
    assert "spec.predictor" in message and "probe" in message

    created = await kube.create(_isvc("iris"), namespace=ns)
    predictor = created["spec"]["predictor"]
    assert "sklearn" not in predictor, "the mutating webhook did not default the framework"
    assert predictor["model"]["modelFormat"] == {"name": "sklearn"}
    assert predictor["model"]["storageUri"] == "gs://bucket/iris"
    assert created["metadata"]["annotations"][MODE] == "Standard"

    changed = {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {"name": "iris", "annotations": {MODE: "Knative"}},
    }
    message = await _refused(kube.apply(changed, namespace=ns))
    assert f"metadata.annotations[{MODE}]" in message and "immutable" in message
    got = await kube.get(ISVC, "InferenceService", "iris", ns)
    assert got is not None and got["metadata"]["annotations"][MODE] == "Standard"


def _llm_v1alpha1(name: str) -> dict[str, Any]:
    return {
        "apiVersion": V1ALPHA1,
        "kind": "LLMInferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": "hf://org/model",
                "name": "model",
                "criticality": "Critical",
                "lora": {"adapters": [{"uri": "hf://org/a", "criticality": "Sheddable"}]},
            },
            "replicas": 1,
            "router": {
                "scheduler": {
                    "pool": {
                        "spec": {
                            "selector": {"app": name},
                            "targetPortNumber": 8000,
                            "extensionRef": {
                                "kind": "Service",
                                "name": f"{name}-epp",
                                "portNumber": 9002,
                                "failureMode": "FailClose",
                            },
                        }
                    }
                }
            },
        },
    }


async def test_llm_inference_service_converts_between_versions_through_the_api_server(
    kube: Kube, webhooks: Webhooks
) -> None:
    ns = webhooks.namespace
    sent = _llm_v1alpha1("llm")

    async def created() -> dict[str, Any] | None:
        # the API server serves the new conversion stanza once its CRD handler has restarted
        try:
            return await kube.create(sent, namespace=ns)
        except (KubeError, ApiException):
            return None

    answer = await wait_for(created, "a v1alpha1 LLMInferenceService created", within=60)
    assert answer is not None and answer["apiVersion"] == V1ALPHA1
    assert answer["spec"]["model"]["criticality"] == "Critical"

    stored = await kube.get(V1ALPHA2, "LLMInferenceService", "llm", ns)
    assert stored is not None and stored["apiVersion"] == V1ALPHA2
    assert "criticality" not in stored["spec"]["model"]
    annotations = stored["metadata"]["annotations"]
    assert annotations[MODEL_CRITICALITY_ANNOTATION] == "Critical"
    assert json.loads(annotations[LORA_CRITICALITIES_ANNOTATION]) == {"0": "Sheddable"}
    pool = stored["spec"]["router"]["scheduler"]["pool"]["spec"]
    assert pool["selector"] == {"matchLabels": {"app": "llm"}}
    assert pool["targetPorts"] == [{"number": 8000}]
    assert pool["endpointPickerRef"]["port"] == {"number": 9002}

    served = await kube.get(V1ALPHA1, "LLMInferenceService", "llm", ns)
    assert served is not None
    assert served["spec"] == sent["spec"]
    assert not served["metadata"].get("annotations")

    crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", LLM_CRD_NAME)
    assert crd is not None and crd["status"]["storedVersions"] == ["v1alpha2"]

    # v1alpha2-only fields: kept at v1alpha2, absent from the v1alpha1 view
    offloading = copy.deepcopy(stored)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        offloading["metadata"].pop(key, None)
    offloading["metadata"]["name"] = "llm-offload"
    offloading["spec"]["kvCacheOffloading"] = {"cpu": "4Gi"}
    await kube.create(offloading, namespace=ns)
    got2 = await kube.get(V1ALPHA2, "LLMInferenceService", "llm-offload", ns)
    got1 = await kube.get(V1ALPHA1, "LLMInferenceService", "llm-offload", ns)
    assert got2 is not None and got2["spec"]["kvCacheOffloading"] == {"cpu": "4Gi"}
    assert got1 is not None and "kvCacheOffloading" not in got1["spec"]

    # the validating webhook, registered at v1alpha2, sees a v1alpha1 object converted
    invalid = _llm_v1alpha1("llm-invalid")
    invalid["spec"]["scaling"] = {"maxReplicas": 2}
    message = await _refused(kube.create(invalid, namespace=ns))
    assert "spec.scaling" in message and "llm-invalid" in message
