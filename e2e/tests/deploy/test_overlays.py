"""Every overlay builds with the pinned kustomize, every object of a built-in kind passes
`kubernetes-validate --strict` for the pinned Kubernetes minor, every object of another project's
kind (Gateway, cert-manager's) its CRD's schema, and the rendered install keeps
its promises: pods hardened, the configuration valid, the webhooks wired to the certificate."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from wharf_api.config import CONFIGMAP_NAME, from_configmap_data
from wharf_api.crdgen.k8s_schemas import KUBERNETES_MINOR
from wharf_controller.webhook.server import CONVERT_PATH, MUTATE_PATHS, VALIDATE_PATHS
from wharf_e2e.crds import crd_schemas

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
WEBHOOK_SERVICE = "wharf-webhook-service"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())

Build = Callable[[str], list[dict[str, Any]]]
NAMESPACE = "kserve"
BUILT_IN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "networking.k8s.io",
    "coordination.k8s.io",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterServingRuntime",
    "ClusterStorageContainer",
}
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet"}
STANDARD_MODE = ("standard", "gpu", "kind-e2e", "dev")


def _group(obj: dict[str, Any]) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers") or []
    yield from pod["containers"]


# Overlays share most objects (the CRDs above all): each distinct object is validated once.
_VALIDATED: dict[str, str | None] = {}


def _validation_problem(obj: dict[str, Any]) -> str | None:
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    if digest not in _VALIDATED:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
            _VALIDATED[digest] = None
        except kubernetes_validate.ValidationError as exc:
            _VALIDATED[digest] = f"{exc.message} at {list(exc.path)}"
    return _VALIDATED[digest]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_built_in_objects_pass_strict_validation(kustomize_build: Build, overlay: str) -> None:
    path = overlay if overlay == "base" else f"overlays/{overlay}"
    objects = kustomize_build(path)
    checked = 0
    for obj in objects:
        if _group(obj) not in BUILT_IN_GROUPS:
            continue
        where = f"deploy/{path}: {obj['kind']}/{obj['metadata']['name']}"
        problem = _validation_problem(obj)
        assert problem is None, f"{where}: {problem}"
        checked += 1
    assert checked > 20, f"deploy/{path}: only {checked} built-in objects rendered"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_third_party_objects_pass_their_crds(kustomize_build: Build, overlay: str) -> None:
    """The real CRDs of Gateway API and the others (e2e/cluster/third-party-crds.sh), cert-manager's
    stubs; strict, as `kubectl apply` is: an undeclared field fails."""
    schemas = crd_schemas()
    checked = set()
    for obj in kustomize_build(f"overlays/{overlay}"):
        if _group(obj) in BUILT_IN_GROUPS or _group(obj).endswith("kserve.io"):
            continue
        where = f"deploy/overlays/{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        assert schema is not None, f"{where}: no fixture CRD for {obj['apiVersion']}"
        jsonschema.validate(obj, schema)
        checked.add(obj["kind"])
    assert "Certificate" in checked


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_namespaced_objects_land_in_kserve(kustomize_build: Build, overlay: str) -> None:
    path = overlay if overlay == "base" else f"overlays/{overlay}"
    for obj in kustomize_build(path):
        namespace = obj["metadata"].get("namespace")
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, f"{where} is cluster-scoped but got namespace {namespace}"
        else:
            assert namespace == NAMESPACE, f"{where}: namespace {namespace!r}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened(kustomize_build: Build, overlay: str) -> None:
    workloads = [o for o in kustomize_build(f"overlays/{overlay}") if o["kind"] in WORKLOADS]
    assert {o["metadata"]["name"] for o in workloads} >= {"wharf-controller", "wharf-model-agent"}
    for workload in workloads:
        where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in _containers(pod):
            name = f"{where} container {container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in security["capabilities"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_configmap_is_a_valid_config(kustomize_build: Build, overlay: str) -> None:
    path = overlay if overlay == "base" else f"overlays/{overlay}"
    configmap = _find(kustomize_build(path), "ConfigMap", CONFIGMAP_NAME)
    config = from_configmap_data(configmap["data"], f"deploy/{path}")
    if overlay in STANDARD_MODE:
        assert config.deploy.default_deployment_mode == "Standard"
        assert config.ingress.enable_gateway_api is True
        assert config.ingress.kserve_ingress_gateway == "kserve/kserve-ingress-gateway"
    else:  # base and knative keep KServe's default
        assert config.deploy.default_deployment_mode == "Knative"
        assert config.ingress.enable_gateway_api is False


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "kind-e2e"])
def test_webhooks_are_served_by_the_controller_with_an_injected_ca(
    kustomize_build: Build, overlay: str
) -> None:
    objects = kustomize_build(f"overlays/{overlay}")
    certificate = _find(objects, "Certificate", "wharf-serving-cert")
    service = _find(objects, "Service", WEBHOOK_SERVICE)
    inject = f"{NAMESPACE}/{certificate['metadata']['name']}"
    assert f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    # The Service reaches the controller's pods on the port named `webhook`: 9443.
    controller = _find(objects, "Deployment", "wharf-controller")
    pod = controller["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert ports[service["spec"]["ports"][0]["targetPort"]] == 9443
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["webhook-certs"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    # ... and the controller serves them from where the Secret is mounted
    container = pod["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"--webhook-cert-dir={mounts['webhook-certs']}" in container["args"]

    paths = set()
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = next(o for o in objects if o["kind"] == kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == inject
        for hook in config["webhooks"]:
            ref = hook["clientConfig"]["service"]
            assert (ref["name"], ref["namespace"]) == (WEBHOOK_SERVICE, NAMESPACE)
            assert hook["failurePolicy"] == "Fail"
            paths.add(ref["path"])
    # exactly the paths the controller serves: a path it lacks would refuse every object
    assert paths == set(MUTATE_PATHS) | set(VALIDATE_PATHS)

    for name in (
        "llminferenceservices.serving.kserve.io",
        "llminferenceserviceconfigs.serving.kserve.io",
    ):
        crd = _find(objects, "CustomResourceDefinition", name)
        assert crd["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == inject
        conversion = crd["spec"]["conversion"]
        assert conversion["strategy"] == "Webhook"
        ref = conversion["webhook"]["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["path"]) == (
            WEBHOOK_SERVICE,
            NAMESPACE,
            CONVERT_PATH,
        )


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_the_secret_policy_binds_the_controllers_service_account(
    kustomize_build: Build, overlay: str
) -> None:
    """The policy narrowing the controller's Secret creates is in every install, enforced, and
    matches the ServiceAccount the ClusterRole is bound to: a renamed account would otherwise
    keep `create` on Secrets while the policy matched no one."""
    path = overlay if overlay == "base" else f"overlays/{overlay}"
    objects = kustomize_build(path)
    policy = _find(objects, "ValidatingAdmissionPolicy", "wharf-controller-secrets")["spec"]
    binding = _find(objects, "ValidatingAdmissionPolicyBinding", "wharf-controller-secrets")
    assert binding["spec"]["policyName"] == "wharf-controller-secrets"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["failurePolicy"] == "Fail"
    assert policy["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
         "resources": ["secrets"]}
    ]  # fmt: skip
    role_binding = _find(objects, "ClusterRoleBinding", "wharf-controller")
    (subject,) = role_binding["subjects"]
    (condition,) = policy["matchConditions"]
    assert f"endsWith(':{subject['name']}')" in condition["expression"]
    assert "startsWith('system:serviceaccount:')" in condition["expression"]
    role = _find(objects, "ClusterRole", role_binding["roleRef"]["name"])
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secret_rules] == [["get", "create"]]


def test_kind_e2e_leaves_the_webhooks_out(kustomize_build: Build) -> None:
    objects = kustomize_build("overlays/kind-e2e")
    kinds = {o["kind"] for o in objects}
    assert "MutatingWebhookConfiguration" not in kinds
    assert "ValidatingWebhookConfiguration" not in kinds
    crd = _find(objects, "CustomResourceDefinition", "llminferenceservices.serving.kserve.io")
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert _find(objects, "Deployment", "wharf-controller")["spec"]["replicas"] == 1


def test_gpu_overlay_puts_llm_runtimes_on_gpu_nodes(kustomize_build: Build) -> None:
    objects = kustomize_build("overlays/gpu")
    for name in (
        "kserve-huggingfaceserver",
        "kserve-vllmserver",
        "kserve-huggingfaceserver-multinode",
    ):
        spec = _find(objects, "ClusterServingRuntime", name)["spec"]
        specs = [spec, spec["workerSpec"]] if "workerSpec" in spec else [spec]
        for pod in specs:
            assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1", name
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
            assert pod["tolerations"][0]["key"] == "nvidia.com/gpu", name
    sklearn = _find(objects, "ClusterServingRuntime", "kserve-sklearnserver")["spec"]
    assert "nodeSelector" not in sklearn, "CPU runtimes stay off the GPU nodes"


def test_dev_overlay_logs_at_debug(kustomize_build: Build) -> None:
    objects = kustomize_build("overlays/dev")
    controller = _find(objects, "Deployment", "wharf-controller")
    assert controller["spec"]["replicas"] == 1
    env = {
        e["name"]: e.get("value")
        for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WHARF_LOG_LEVEL"] == "DEBUG"
    agent = _find(objects, "DaemonSet", "wharf-model-agent")
    assert "--log-level=DEBUG" in agent["spec"]["template"]["spec"]["containers"][0]["args"]
