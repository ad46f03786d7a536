"""A real Kubernetes control plane on loopback for tests.

Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from a bin
directory produced by ``e2e/cluster/k8s-binaries.sh``, waits for ``/readyz``, writes a
kubeconfig, and stops every process by PID.

Authentication is a static token (``--token-auth-file``) for user ``admin`` in group
``system:masters``. The apiserver's serving certificate is signed by a CA generated here,
with the ``cryptography`` package (a dependency of this member).

Usage::

    with ControlPlane(Path(bin_dir)) as cp:
        httpx.get(cp.server + "/api", headers=cp.auth_headers, verify=str(cp.ca_file))
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from wharf_e2e.testing import die_with_parent, free_port

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
ADMIN_TOKEN = "wharf-e2e-admin-token"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# What kwok does to fake nodes and their pods (Ready nodes, Running pods); kwok has no default.
KWOK_STAGES = Path(__file__).resolve().parents[2] / "cluster" / "kwok-stages.yaml"


class ControlPlaneError(RuntimeError):
    """The control plane failed to start."""


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names of required binaries absent (or not executable) in ``bin_dir``."""
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


def _write_pki_cryptography(pki: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    later = now + datetime.timedelta(days=2)

    def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wharf-e2e-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(later)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    (pki / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.crt").write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(pem_key(srv_key))
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def write_pki(pki: Path) -> None:
    """Write ca.crt, apiserver.{crt,key} and sa.{key,pub} into ``pki``."""
    pki.mkdir(parents=True, exist_ok=True)
    _write_pki_cryptography(pki)


def kubeconfig_text(server: str, ca_file: Path, token: str) -> str:
    """A kubeconfig for ``server`` with a bearer token; plain YAML, no dependency."""
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: wharf-e2e\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority: {ca_file}\n"
        "users:\n"
        "- name: admin\n"
        "  user:\n"
        f"    token: {token}\n"
        "contexts:\n"
        "- name: wharf-e2e\n"
        "  context:\n"
        "    cluster: wharf-e2e\n"
        "    user: admin\n"
        "current-context: wharf-e2e\n"
    )


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok on loopback."""

    bin_dir: Path
    work_dir: Path | None = None
    start_timeout: float = 120.0
    with_controllers: bool = True
    with_kwok: bool = True
    _procs: list[_Proc] = field(default_factory=list, init=False, repr=False)
    _own_work_dir: bool = field(default=False, init=False, repr=False)
    apiserver_port: int = field(default=0, init=False)

    # --- paths -------------------------------------------------------------
    @property
    def root(self) -> Path:
        if self.work_dir is None:
            raise ControlPlaneError("control plane not started")
        return self.work_dir

    @property
    def ca_file(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # --- lifecycle ---------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        needed = ["etcd", "kube-apiserver"]
        if self.with_controllers:
            needed += ["kube-controller-manager", "kube-scheduler"]
        if self.with_kwok:
            needed.append("kwok")
        missing = [b for b in missing_binaries(self.bin_dir) if b in needed]
        if missing:
            raise ControlPlaneError(f"{self.bin_dir} lacks {', '.join(missing)}")
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="wharf-k8s-"))
            self._own_work_dir = True
        root = self.root
        (root / "logs").mkdir(parents=True, exist_ok=True)
        pki = root / "pki"
        write_pki(pki)
        (root / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')

        try:
            self._start_etcd_and_apiserver(root, pki)
            self.kubeconfig.write_text(kubeconfig_text(self.server, self.ca_file, ADMIN_TOKEN))
            if self.with_controllers:
                self._start_controllers(pki)
            if self.with_kwok:
                self._spawn(
                    "kwok",
                    f"--kubeconfig={self.kubeconfig}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                    "--manage-nodes-with-label-selector=",
                    "--cidr=10.0.0.0/24",
                    "--node-ip=10.0.0.1",
                    f"--config={KWOK_STAGES}",
                )
        except BaseException:
            self.stop()
            raise

    def _start_etcd_and_apiserver(self, root: Path, pki: Path) -> None:
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true",
        )
        self._wait_http(f"{etcd_url}/health", "etcd", None)

        self.apiserver_port = free_port()
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            f"--token-auth-file={root / 'tokens.csv'}",
            f"--service-account-issuer=https://127.0.0.1:{self.apiserver_port}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            *(() if self.with_controllers else ("--disable-admission-plugins=ServiceAccount",)),
        )
        self._wait_http(f"{self.server}/readyz", "kube-apiserver", self._ssl_context(pki))

    def _start_controllers(self, pki: Path) -> None:
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            # kwok renews its fake nodes' heartbeats every 20-40 s (kwok-stages.yaml), later on
            # a loaded machine; past the default 40 s grace period the node lifecycle
            # controller would mark the nodes Unknown and their pods not ready, and
            # kwok's pod stage never makes them ready again: a test would then wait on an
            # artefact of the harness, not on what it tests
            "--node-monitor-grace-period=10m",
        )
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process by PID (SIGTERM, then SIGKILL), newest first."""
        for proc in reversed(self._procs):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in reversed(self._procs):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.popen.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self._procs.clear()
        if (
            self._own_work_dir
            and self.work_dir is not None
            and not os.environ.get("WHARF_E2E_KEEP")
        ):
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def add_fake_node(
        self, name: str = "kwok-node-0", capacity: dict[str, str] | None = None
    ) -> None:
        """Create a Node that kwok manages (it reports Ready and "runs" pods bound to it).

        `capacity` adds extended resources (e.g. `{"nvidia.com/gpu": "8"}`) to the node's
        capacity and allocatable, next to the CPU, memory and pods every fake node has.
        """
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110", **(capacity or {})}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": name},
            },
            "spec": {"taints": []},
            # in the create request, as the kubelet registers a node (the API server keeps a
            # Node's status on create): kwok renders its stages from the node it is told of,
            # and a status patched in after the create could race a render without it
            "status": {"capacity": resources, "allocatable": resources},
        }
        self._request("POST", "/api/v1/nodes", node, "application/json")

    def _request(self, method: str, path: str, body: object, content_type: str) -> None:
        req = urllib.request.Request(
            f"{self.server}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={**self.auth_headers, "Content-Type": content_type},
        )
        with urllib.request.urlopen(req, timeout=10, context=self._ssl_context(self.root / "pki")):
            pass

    # --- helpers -----------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> None:
        log = self.log_path(name)
        with log.open("ab") as fh:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self._procs.append(_Proc(name, popen, log))

    def _ssl_context(self, pki: Path) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(pki / "ca.crt"))

    def _wait_http(self, url: str, name: str, ctx: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + self.start_timeout
        proc = next(p for p in reversed(self._procs) if p.name == name)
        last = ""
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.popen.returncode}; log tail:\n{_tail(proc.log)}"
                )
            req = urllib.request.Request(url, headers=self.auth_headers if ctx else {})
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.5)
        raise ControlPlaneError(
            f"{name} not ready at {url} after {self.start_timeout}s ({last}); log tail:\n"
            f"{_tail(proc.log)}"
        )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
