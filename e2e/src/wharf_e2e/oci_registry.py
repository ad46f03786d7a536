"""An anonymous OCI registry (the CNCF distribution registry, built by scripts/install-test-tools)
on loopback, for the tests that pull `oci://` models through the CLIs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wharf_e2e.setup_gate import wait_for_setup
from wharf_e2e.testing import free_port

CACHE = Path(os.environ.get("WHARF_CACHE", Path.home() / ".cache" / "wharf"))
MISSING = "the OCI registry (distribution) is not installed; run scripts/install-test-tools"


def registry_binary() -> str | None:
    """`WHARF_OCI_REGISTRY`, else the one scripts/install-test-tools built, else `registry` on PATH."""
    wait_for_setup()
    explicit = os.environ.get("WHARF_OCI_REGISTRY")
    cached = CACHE / "go" / "bin" / "registry"
    return explicit or (str(cached) if cached.exists() else shutil.which("registry"))


@contextmanager
def serve_registry(binary: str, workdir: Path) -> Iterator[str]:
    """Run the registry with its storage under `workdir`; yields `127.0.0.1:<port>`."""
    port = free_port()
    (workdir / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(workdir / "config.yml")],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"the registry exited with {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the registry did not listen within 30 s"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
