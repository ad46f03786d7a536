"""The install as users run it, on a real control plane (etcd, kube-apiserver, the controller
manager, the scheduler, kwok running the pods), with the project's pinned kubectl:

- `kubectl apply --server-side` of the CRDs, then of `overlays/kind-e2e`, succeeds;
- every other overlay passes the API server's own validation (server-side dry run with strict
  field validation), custom resources against their CRDs (the real ones of Gateway API, GIE,
  KEDA, Knative and LWS from e2e/cluster/third-party-crds.sh, cert-manager's stubs);
- `wharf-controller run`, a local process holding only a token of the overlay's ServiceAccount,
  becomes ready and reconciles the examples' InferenceServices to Ready;
- SubjectAccessReviews: that ServiceAccount may do what reconciling needs, nothing more;
- the ValidatingAdmissionPolicy `wharf-controller-secrets`: as that ServiceAccount, only an
  Opaque `*-epp-peer-token` Secret may be created (an LLM router's peer token, which the
  controller makes for real here), while the cluster admin is not restricted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from wharf_api import load_documents
from wharf_api.conversion import convert
from wharf_e2e.cluster import ControlPlane, kubeconfig_text, missing_binaries
from wharf_e2e.crds import require_third_party_crd_dir
from wharf_e2e.pytest_plugin import CPU_NODE, GPU_NODE
from wharf_e2e.setup_gate import K8S_BINARIES, failure_note, wait_for_setup
from wharf_e2e.testing import free_port, wait_until

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
NAMESPACE = "kserve"
ACCOUNT = f"system:serviceaccount:{NAMESPACE}:wharf-controller"
ACCOUNT_GROUPS = [
    "system:serviceaccounts",
    f"system:serviceaccounts:{NAMESPACE}",
    "system:authenticated",
]
OTHER_OVERLAYS = ("standard", "knative", "gpu", "dev")
# The examples' InferenceServices the Standard-mode controller serves with the built-in
# runtimes; examples/transformer-predictor.yaml names a pytorch model no built-in runtime
# serves (its golden file says so), so it never becomes Ready.
EXAMPLES = (
    "sklearn-iris.yaml",
    "sklearn-iris-shortcut.yaml",
    "xgboost-v2.yaml",
    "canary.yaml",
    "scale-to-zero.yaml",
)


class Kubectl:
    def __init__(self, tools: Path, kubeconfig: Path) -> None:
        self.binary = str(tools / "kubectl")
        self.kubeconfig = str(kubeconfig)

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def kube_cluster() -> Iterator[ControlPlane]:
    """A control plane of this module's own: the install is tested on a fresh cluster, as users
    install it. The session's shared one holds the same CRDs applied by other tests under their
    own field manager (a conversion webhook on loopback, say), which the overlay's server-side
    apply cannot take over."""
    wait_for_setup()
    bin_dir = os.environ.get("WHARF_K8S_BIN")
    if not bin_dir or missing_binaries(Path(bin_dir)):
        note = failure_note(K8S_BINARIES)
        reason = f"no Kubernetes control plane binaries (WHARF_K8S_BIN={bin_dir!r}){note}"
        if os.environ.get("WHARF_K8S_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with ControlPlane(Path(bin_dir)) as plane:
        plane.add_fake_node(CPU_NODE)
        plane.add_fake_node(GPU_NODE, capacity={"nvidia.com/gpu": "8"})
        yield plane


@pytest.fixture(scope="module")
def kubectl(kube_cluster: ControlPlane, kube_tools: Path) -> Kubectl:
    return Kubectl(kube_tools, kube_cluster.kubeconfig)


@pytest.fixture(scope="module")
def installed(kubectl: Kubectl) -> Kubectl:
    """docs/install.md's commands, for kind-e2e: the CRDs first (a CRD must be served before
    objects of its kind can be applied), then the overlay. The fixture CRDs stand for the
    prerequisites: the real Gateway API, GIE, KEDA, Knative and LWS CRDs
    (e2e/cluster/third-party-crds.sh) and cert-manager's stubs."""
    prerequisites = (str(require_third_party_crd_dir()), str(REPO / "e2e" / "cluster" / "crds"))
    for crds in (*prerequisites, str(DEPLOY / "base" / "crds")):
        kubectl("apply", "--server-side", "-k", crds)
        # `kubectl wait` takes no -k: the built CRDs on stdin.
        wait = ("wait", "--for=condition=Established", "--timeout=60s", "-f", "-")
        kubectl(*wait, stdin=kubectl("kustomize", crds))
    out = kubectl("apply", "--server-side", "-k", str(DEPLOY / "overlays" / "kind-e2e"))
    assert "deployment.apps/wharf-controller serverside-applied" in out
    return kubectl


def test_kind_e2e_is_installed(installed: Kubectl) -> None:
    deployment = json.loads(
        installed("get", "-n", NAMESPACE, "deployment", "wharf-controller", "-o", "json")
    )
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "wharf-controller"
    runtimes = installed("get", "clusterservingruntimes", "-o", "name")
    assert "clusterservingruntime.serving.kserve.io/kserve-sklearnserver" in runtimes
    # The pods pass admission (Pod Security included) and run (kwok runs them on fake nodes).
    for selector in (
        "app.kubernetes.io/name=wharf-controller",
        "app.kubernetes.io/name=wharf-model-agent",
    ):
        wait_until(
            partial(_running_pods, installed, selector),
            f"a running pod with {selector}",
            timeout_s=60,
            every_s=0.5,
        )
    # The Certificate and Issuer were accepted by their (fixture) CRDs.
    assert "wharf-serving-cert" in installed("get", "-n", NAMESPACE, "certificates", "-o", "name")


def _running_pods(kubectl: Kubectl, selector: str) -> list[str]:
    pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json"))
    return [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]


@pytest.mark.parametrize("overlay", OTHER_OVERLAYS)
def test_overlay_passes_the_api_server(
    installed: Kubectl, kustomize_build: Callable[[str], list[dict[str, Any]]], overlay: str
) -> None:
    """The overlay as the pinned kustomize builds it, dry-run on the server with strict field
    validation. CRDs equal to the installed ones (kind-e2e's) are left out: they were applied
    for real above, and they are most of the bytes."""
    installed_crds = [
        o for o in kustomize_build("overlays/kind-e2e") if o["kind"] == "CustomResourceDefinition"
    ]
    objects = [o for o in kustomize_build(f"overlays/{overlay}") if o not in installed_crds]
    out = installed(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "--validate=strict",
        "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )  # fmt: skip
    assert out.count("serverside-applied (server dry run)") == len(objects), out
    for applied in (
        "clusterservingruntime.serving.kserve.io/kserve-sklearnserver",
        "certificate.cert-manager.io/wharf-serving-cert",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/wharf-validating",
        "customresourcedefinition.apiextensions.k8s.io/llminferenceservices.serving.kserve.io",
    ):
        assert f"{applied} serverside-applied (server dry run)" in out


def test_a_typo_in_a_custom_resource_is_refused(installed: Kubectl) -> None:
    """What the dry runs above are worth: a field the CRD does not have fails them."""
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "typo", "namespace": NAMESPACE},
        "spec": {"secretName": "s", "issuerRef": {"name": "i"}, "dnsName": ["x"]},
    }
    result = subprocess.run(
        [installed.binary, f"--kubeconfig={installed.kubeconfig}", "apply", "--server-side",
         "--dry-run=server", "--validate=strict", "-f", "-"],
        input=json.dumps(certificate), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "dnsName" in result.stderr


def _service_account_kubeconfig(kubectl: Kubectl, plane: ControlPlane, path: Path) -> Path:
    token = kubectl("create", "token", "wharf-controller", "-n", NAMESPACE, "--duration=1h").strip()
    path.write_text(kubeconfig_text(plane.server, plane.ca_file, token))
    return path


@pytest.fixture
def controller(installed: Kubectl, kube_cluster: ControlPlane, tmp_path: Path) -> Iterator[str]:
    """`wharf-controller run` as a local process with only the ServiceAccount's token; yields
    its metrics URL once /readyz answers."""
    config = _service_account_kubeconfig(
        installed, kube_cluster, tmp_path / "controller.kubeconfig"
    )
    port = free_port()
    log = (tmp_path / "controller.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "wharf_controller", "run", f"--kubeconfig={config}",
         f"--namespace={NAMESPACE}", f"--metrics-port={port}", "--metrics-host=127.0.0.1",
         f"--identity=e2e-{uuid.uuid4().hex[:6]}", "--resync-seconds=600",
         f"--model-cache-namespace={NAMESPACE}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(config)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is None and httpx.get(f"{url}/readyz").status_code == 200,
            "wharf-controller /readyz",
            timeout_s=60,
        )
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        # RBAC refusals only: a 403 for a namespace being deleted (a test's namespace going
        # away while the controller still reconciles it) is the API server's, not the policy's
        forbidden = [
            line
            for line in (tmp_path / "controller.log").read_text().splitlines()
            if "403" in line and "because it is being terminated" not in line
        ]
        assert not forbidden, "the controller was refused:\n" + "\n".join(forbidden[:10])


def _ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    obj = json.loads(kubectl("get", "-n", namespace, "inferenceservice", name, "-o", "json"))
    conditions = obj.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return obj if ready else None


def test_controller_reconciles_the_examples_as_its_service_account(
    installed: Kubectl, controller: str
) -> None:
    namespace = f"examples-{uuid.uuid4().hex[:6]}"
    installed("create", "namespace", namespace)
    try:
        names = []
        for example in EXAMPLES:
            doc = yaml.safe_load((REPO / "examples" / example).read_text())
            installed(
                "apply", "--server-side", "-n", namespace, "-f", str(REPO / "examples" / example)
            )
            names.append(doc["metadata"]["name"])
        for name in names:
            obj = wait_until(
                partial(_ready, installed, namespace, name),
                f"InferenceService {namespace}/{name} Ready",
                timeout_s=90,
                every_s=0.5,
            )
            assert isinstance(obj, dict)
            assert obj["status"]["url"] == f"http://{name}-{namespace}.kind.test"
        # The kind-e2e configuration is the one it runs with: Gateway API routes.
        routes = installed("get", "-n", namespace, "httproutes", "-o", "name")
        assert f"httproute.gateway.networking.k8s.io/{names[0]}" in routes
        lease = json.loads(
            installed("get", "-n", NAMESPACE, "lease", "wharf-controller-leader", "-o", "json")
        )
        assert lease["spec"]["holderIdentity"].startswith("e2e-")
        metrics = httpx.get(f"{controller}/metrics").text
        assert (
            'wharf_controller_reconciles_total{kind="InferenceService",result="success"}' in metrics
        )
    finally:
        installed("delete", "namespace", namespace, "--wait=false")


def _review(
    namespace: str, verb: str, resource: str, group: str = "", **extra: str
) -> dict[str, Any]:
    attributes = {
        "namespace": namespace,
        "verb": verb,
        "resource": resource,
        "group": group,
        **extra,
    }
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": ACCOUNT, "groups": ACCOUNT_GROUPS, "resourceAttributes": attributes},
    }


SERVING = "serving.kserve.io"
TEAM = "team-a"
ALLOWED = [
    *(_review("", v, r, SERVING) for v in ("get", "list", "watch")
      for r in ("inferenceservices", "inferencegraphs", "llminferenceservices", "llminferenceserviceconfigs",
                "servingruntimes", "clusterservingruntimes", "clusterstoragecontainers")),
    *(_review(TEAM, "patch", r, SERVING, subresource="status")
      for r in ("inferenceservices", "inferencegraphs", "llminferenceservices")),
    *(_review(TEAM, "update", r, SERVING, subresource="finalizers")
      for r in ("inferenceservices", "inferencegraphs", "llminferenceservices")),
    # An LLMInferenceService's children: multi-node workloads, the pool, the router's RBAC
    # (a Role it may only fill with what the controller holds: get/list/watch pods).
    *(_review(TEAM, v, r, g) for v in ("get", "list", "watch", "create", "patch", "delete")
      for g, r in (("leaderworkerset.x-k8s.io", "leaderworkersets"), ("serving.knative.dev", "services"),
                   ("inference.networking.k8s.io", "inferencepools"),
                   ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
                   ("", "serviceaccounts"))),
    *(_review(TEAM, v, "pods") for v in ("get", "list", "watch")),
    # The model cache.
    *(_review("", v, r, SERVING) for v in ("get", "list", "watch")
      for r in ("localmodelcaches", "localmodelnodegroups", "localmodelnodes")),
    _review(TEAM, "watch", "localmodelnamespacecaches", SERVING),
    _review("", "patch", "localmodelcaches", SERVING, subresource="status"),
    *(_review("", v, "localmodelnodes", SERVING) for v in ("create", "patch", "delete")),
    *(_review("", v, "nodes") for v in ("get", "list", "watch")),
    _review("", "create", "persistentvolumes"),
    _review(TEAM, "create", "persistentvolumeclaims"),
    _review(NAMESPACE, "patch", "daemonsets", "apps"),
    *(_review(TEAM, v, r, g) for v in ("get", "list", "watch", "create", "patch", "delete")
      for g, r in (("apps", "deployments"), ("", "services"), ("autoscaling", "horizontalpodautoscalers"),
                   ("policy", "poddisruptionbudgets"), ("networking.k8s.io", "ingresses"),
                   ("gateway.networking.k8s.io", "httproutes"), ("keda.sh", "scaledobjects"))),
    _review(TEAM, "get", "secrets", name="s3-creds"),
    # the LLM router's peer token, made once when absent (never updated: it is immutable)
    _review(TEAM, "create", "secrets"),
    _review(TEAM, "get", "serviceaccounts", name="default"),
    *(_review(NAMESPACE, v, "configmaps", name="inferenceservice-config") for v in ("get", "list", "watch")),
    _review(NAMESPACE, "create", "leases", "coordination.k8s.io"),
    *(_review(NAMESPACE, v, "leases", "coordination.k8s.io", name="wharf-controller-leader") for v in ("get", "update")),
]  # fmt: skip
DENIED = [
    # the controller makes no NetworkPolicy (who reaches a pod is the cluster admin's policy)
    _review(TEAM, "create", "networkpolicies", "networking.k8s.io"),
    # Secrets: one GET by name per reconcile, never listed or watched, anywhere; created (the
    # router's peer token) but never changed or deleted.
    *(_review(ns, v, "secrets") for ns in (TEAM, NAMESPACE, "") for v in ("list", "watch")),
    *(_review(TEAM, v, "secrets", name="s3-creds") for v in ("update", "patch", "delete")),
    # Its own namespace: only its ConfigMap and its Lease.
    _review(NAMESPACE, "get", "configmaps", name="other"),
    _review(NAMESPACE, "list", "configmaps"),
    _review(TEAM, "get", "configmaps", name="inferenceservice-config"),
    _review(NAMESPACE, "update", "leases", "coordination.k8s.io", name="someone-elses"),
    _review(TEAM, "create", "leases", "coordination.k8s.io"),
    # Users' specs are theirs.
    *(_review(TEAM, v, "inferenceservices", SERVING) for v in ("create", "update", "patch", "delete")),
    _review("", "create", "servingruntimes", SERVING),
    # Cluster administration.
    _review("", "delete", "nodes"),
    _review("", "create", "clusterroles", "rbac.authorization.k8s.io"),
    _review("", "create", "clusterrolebindings", "rbac.authorization.k8s.io"),
    _review("", "bind", "roles", "rbac.authorization.k8s.io"),
    _review("", "bind", "clusterroles", "rbac.authorization.k8s.io", name="cluster-admin"),
    _review("", "escalate", "clusterroles", "rbac.authorization.k8s.io"),
    _review("", "impersonate", "users"),
    _review("", "delete", "namespaces", name=NAMESPACE),
    _review("", "create", "customresourcedefinitions", "apiextensions.k8s.io"),
    _review("", "patch", "mutatingwebhookconfigurations", "admissionregistration.k8s.io"),
    _review(TEAM, "create", "pods"),
    _review(TEAM, "create", "pods", subresource="exec"),
    _review(TEAM, "delete", "pods"),
    _review(TEAM, "update", "pods"),
]  # fmt: skip


def _decisions(kubectl: Kubectl, reviews: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    body = {"apiVersion": "v1", "kind": "List", "items": reviews}
    out = kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(body))
    # One JSON document per review, one after another.
    decoder, results, at = json.JSONDecoder(), [], 0
    while at < len(out.rstrip()):
        review, end = decoder.raw_decode(out, at)
        results.append(review)
        at = end + (len(out[end:]) - len(out[end:].lstrip()))
    assert len(results) == len(reviews)
    return [
        (
            json.dumps(r["spec"]["resourceAttributes"], sort_keys=True),
            bool(r["status"].get("allowed")),
        )
        for r in results
    ]


def test_service_account_may_do_what_reconciling_needs(installed: Kubectl) -> None:
    refused = [what for what, allowed in _decisions(installed, ALLOWED) if not allowed]
    assert not refused, "denied:\n" + "\n".join(refused)


def test_service_account_may_do_nothing_more(installed: Kubectl) -> None:
    granted = [what for what, allowed in _decisions(installed, DENIED) if allowed]
    assert not granted, "allowed:\n" + "\n".join(granted)


# The ValidatingAdmissionPolicy on the controller's Secret creates
# (deploy/base/admission-policy): RBAC grants `create` on every Secret, the policy narrows it.
POLICY = "wharf-controller-secrets"
AS_CONTROLLER = (f"--as={ACCOUNT}", *(f"--as-group={g}" for g in ACCOUNT_GROUPS))


def _secret(namespace: str, name: str, type_: str | None, **annotations: str) -> str:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "stringData": {"token": "not-a-real-token"},
    }
    if type_ is not None:
        secret["type"] = type_
    return json.dumps(secret)


def _create(kubectl: Kubectl, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl create -f -` with extra flags (impersonation, dry run); the result, not an
    assertion: refusals are what these tests look at."""
    return subprocess.run(
        [kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}", "create", *args, "-f", "-"],
        input=body, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def secrets_namespace(installed: Kubectl) -> Iterator[str]:
    """A namespace with a ServiceAccount whose token a compromised controller would want, once
    the policy is in force (the API server compiles a new policy a moment after it is stored)."""
    namespace = f"secrets-{uuid.uuid4().hex[:6]}"
    installed("create", "namespace", namespace)
    installed("create", "serviceaccount", "-n", namespace, "victim")
    other = _secret(namespace, "policy-probe", "Opaque")
    wait_until(
        lambda: _create(installed, other, "--dry-run=server", *AS_CONTROLLER).returncode != 0,
        f"the ValidatingAdmissionPolicy {POLICY} in force",
        timeout_s=30,
        every_s=0.2,
    )
    try:
        yield namespace
    finally:
        installed("delete", "namespace", namespace, "--wait=false")


def test_controller_may_not_create_a_service_account_token_secret(
    installed: Kubectl, secrets_namespace: str
) -> None:
    """The escalation RBAC alone leaves open: a token Secret for another ServiceAccount, which
    the token controller fills and `get` would read back. Named like a peer token, so the type
    rule alone refuses it."""
    body = _secret(
        secrets_namespace,
        "victim-epp-peer-token",
        "kubernetes.io/service-account-token",
        **{"kubernetes.io/service-account.name": "victim"},
    )
    result = _create(installed, body, *AS_CONTROLLER)
    assert result.returncode != 0
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in result.stderr, result.stderr
    assert (
        "may only create Secrets of type Opaque, not kubernetes.io/service-account-token"
        in result.stderr
    ), result.stderr
    assert "Error from server (Forbidden)" in result.stderr, result.stderr
    secrets = installed("get", "secrets", "-n", secrets_namespace, "-o", "name")
    assert "victim-epp-peer-token" not in secrets


def test_controller_may_not_create_an_opaque_secret_of_another_name(
    installed: Kubectl, secrets_namespace: str
) -> None:
    for type_ in ("Opaque", None):
        result = _create(installed, _secret(secrets_namespace, "s3-creds", type_), *AS_CONTROLLER)
        assert result.returncode != 0, type_
        assert (
            "may only create Secrets named NAME-epp-peer-token (an LLM router peer token), "
            "not s3-creds" in result.stderr
        ), result.stderr
    assert "s3-creds" not in installed("get", "secrets", "-n", secrets_namespace, "-o", "name")


def test_controller_may_create_a_peer_token_secret(
    installed: Kubectl, secrets_namespace: str
) -> None:
    """What the controller does create: an Opaque `NAME-epp-peer-token`; without a type too
    (the API server defaults it to Opaque)."""
    for name, type_ in (("x-epp-peer-token", "Opaque"), ("y-epp-peer-token", None)):
        result = _create(installed, _secret(secrets_namespace, name, type_), *AS_CONTROLLER)
        assert result.returncode == 0, result.stderr
        stored = json.loads(installed("get", "secret", "-n", secrets_namespace, name, "-o", "json"))
        assert stored["type"] == "Opaque"


def test_the_policy_leaves_other_users_alone(installed: Kubectl, secrets_namespace: str) -> None:
    """The cluster admin (this test's own identity) still creates a ServiceAccount token Secret,
    and the token controller fills it: the policy is scoped to the controller's account."""
    body = _secret(
        secrets_namespace,
        "victim-token",
        "kubernetes.io/service-account-token",
        **{"kubernetes.io/service-account.name": "victim"},
    )
    result = _create(installed, body)
    assert result.returncode == 0, result.stderr

    def filled() -> bool:
        got = json.loads(
            installed("get", "secret", "-n", secrets_namespace, "victim-token", "-o", "json")
        )
        return bool((got.get("data") or {}).get("token"))

    wait_until(filled, "the token controller to fill victim-token", timeout_s=60, every_s=0.5)


def _example_at_stored_version(name: str, kind: str) -> dict[str, Any]:
    """An LLM example at the stored version: kind-e2e has no conversion webhook."""
    doc = next(d for d in load_documents(REPO / "examples" / name) if d["kind"] == kind)
    return convert(doc, "serving.kserve.io/v1alpha2")


def test_controller_makes_the_routers_peer_token_under_the_policy(
    installed: Kubectl, controller: str
) -> None:
    """The one Secret the controller writes, made by `wharf-controller run` with only its
    ServiceAccount's token while the policy is in force (the `controller` fixture fails on any
    403 in its log)."""
    namespace = f"llm-{uuid.uuid4().hex[:6]}"
    installed("create", "namespace", namespace)
    try:
        for example, kind in (
            ("llm-config-cpu.yaml", "LLMInferenceServiceConfig"),
            ("llm-pd.yaml", "LLMInferenceService"),
        ):
            doc = _example_at_stored_version(example, kind)
            installed("apply", "--server-side", "-n", namespace, "-f", "-", stdin=json.dumps(doc))

        def peer_token() -> dict[str, Any] | None:
            out = installed("get", "secrets", "-n", namespace, "-o", "json")
            found = [
                s
                for s in json.loads(out)["items"]
                if s["metadata"]["name"] == "qwen-pd-epp-peer-token"
            ]
            return found[0] if found else None

        secret = wait_until(peer_token, "the router's peer token Secret", timeout_s=90, every_s=0.5)
        assert isinstance(secret, dict)
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "LLMInferenceService"
        # written after the Secret, in the same reconcile: the controller carried on
        wait_until(
            lambda: (
                "deployment.apps/qwen-pd-kserve-router-scheduler"
                in installed("get", "deployments", "-n", namespace, "-o", "name")
            ),
            "the router's Deployment",
            timeout_s=60,
            every_s=0.5,
        )
    finally:
        installed("delete", "namespace", namespace, "--wait=false")
