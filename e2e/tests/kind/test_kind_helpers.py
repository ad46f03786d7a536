"""What the kind tests rely on, checked without a cluster (no marker: these run everywhere).

- The file server: its ConfigMaps stay under the API server's 1 MiB, its join script (run here
  by this Python, as the pod runs it) serves every file byte for byte over HTTP, and the tiny
  Llama's archive unpacks with the storage initializer's own code into the model folder.
- The LLM manifests: the controller's own rendering (`wharf_controller.llm_render`) of them
  gives the Deployments, labels, commands, GPU limits and router Service the kind tests look for.
- The GPU rule: skip on a cluster without the GPUs, fail where the runner has them.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_api.config import InferenceServiceConfig
from wharf_api.llm.presets import ROUTER_PORT
from wharf_api.llm.template_context import child_name
from wharf_controller.llm_render import parse_llm, render_llm_service
from wharf_e2e.kind import (
    CONFIGMAP_LIMIT,
    GPU,
    JOIN_SCRIPT,
    MODEL_ARCHIVE,
    PART_BYTES,
    file_server_objects,
    file_url,
    flag,
    gpu_shortfall,
    llm_service,
    main_command,
    split_parts,
    sse_data,
    tar_gz,
    workload_labels,
)
from wharf_e2e.testing import quiet_port, wait_until
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_storage.archives import unpack

NS = "wharf-kind-test"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _config_maps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ConfigMap"]


def test_the_model_is_cut_into_config_maps_under_the_api_servers_limit(tiny_llama: Path) -> None:
    archive = tar_gz(tiny_llama)
    files = {MODEL_ARCHIVE: archive, "empty.txt": b"", "small.json": b"{}"}
    objects = file_server_objects(NS, files)
    maps = _config_maps(objects)
    assert len(maps) >= 3  # the archive (~1.7 MB) does not fit in one
    for cm in maps:
        sizes = [len(base64.b64decode(v)) for v in cm["binaryData"].values()]
        assert sum(sizes) <= PART_BYTES < CONFIGMAP_LIMIT
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    (projected,) = [v for v in pod["spec"]["volumes"] if "projected" in v]
    assert [s["configMap"]["name"] for s in projected["projected"]["sources"]] == [
        cm["metadata"]["name"] for cm in maps
    ]
    assert file_url(NS, MODEL_ARCHIVE) == (
        f"http://model-files.{NS}.svc.cluster.local:8000/{MODEL_ARCHIVE}"
    )


def test_parts_are_packed_in_order_and_an_empty_file_still_gets_one() -> None:
    big = bytes(range(256)) * (PART_BYTES // 256 + 10)  # just over one part
    groups = split_parts({"empty.txt": b"", "big.bin": big, "tail.txt": b"end"})
    joined = {k: v for group in groups for k, v in group.items()}
    assert list(joined) == ["empty.txt.part-0000", "big.bin.part-0000", "big.bin.part-0001",
                            "tail.txt.part-0000"]  # fmt: skip
    assert joined["big.bin.part-0000"] + joined["big.bin.part-0001"] == big
    assert all(sum(map(len, g.values())) <= PART_BYTES for g in groups)


@pytest.mark.parametrize("name", ["../x", ".hidden", "a/b", "x.part-0001", ""])
def test_a_file_name_that_is_not_a_plain_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="files: "):
        split_parts({name: b"x"})


def test_the_join_script_serves_every_file_as_it_was(tmp_path: Path, tiny_llama: Path) -> None:
    files = {MODEL_ARCHIVE: tar_gz(tiny_llama), "empty.txt": b"", "model.joblib": b"\x00" * 10}
    parts = tmp_path / "parts"
    out = tmp_path / "out"
    # what the projected volume holds: every ConfigMap's keys, and the kubelet's `..data` link
    (parts / "..2026_11_30").mkdir(parents=True)
    (parts / "..data").symlink_to(parts / "..2026_11_30")
    out.mkdir()
    for cm in _config_maps(file_server_objects(NS, files)):
        for key, value in cm["binaryData"].items():
            (parts / key).write_bytes(base64.b64decode(value))
    port = quiet_port()
    server = subprocess.Popen(
        [sys.executable, "-c", JOIN_SCRIPT, str(parts), str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            def up() -> bool:
                return http.get("/empty.txt").status_code == 200

            wait_until(up, "the file server", 30, every_s=0.1)
            for name, data in files.items():
                got = http.get(f"/{name}")
                assert got.status_code == 200 and got.content == data, name
    finally:
        server.terminate()
        server.wait(10)
    assert sorted(p.name for p in out.iterdir()) == sorted(files)


def test_the_archive_unpacks_into_the_model_folder(tmp_path: Path, tiny_llama: Path) -> None:
    archive = tmp_path / MODEL_ARCHIVE
    archive.write_bytes(tar_gz(tiny_llama))
    dest = tmp_path / "mnt-models"
    dest.mkdir()
    unpack(archive, "tar.gz", dest, name=MODEL_ARCHIVE)
    for path in tiny_llama.iterdir():
        assert (dest / path.name).read_bytes() == path.read_bytes()


def _render(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    _, _, children = render_llm_service(parse_llm(doc), [], InferenceServiceConfig())
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def _main(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    main: dict[str, Any] = next(c for c in containers if c["name"] == "main")
    return main


def test_the_single_worker_service_renders_what_the_kind_test_looks_for() -> None:
    name = "tiny-llama"
    uri = file_url(NS, MODEL_ARCHIVE)
    children = _render(llm_service(NS, name, uri))
    deployment = children[("Deployment", child_name(name, "-kserve"))]
    assert flag(main_command(deployment), "--role") == "both"
    assert flag(main_command(deployment), "--kv-transfer") is None
    assert _main(deployment)["resources"]["limits"][GPU] == "1"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert workload_labels(name, "both").items() <= labels.items()
    init = deployment["spec"]["template"]["spec"]["initContainers"]
    assert any(uri in c.get("args", []) for c in init), init
    router = children[("Service", child_name(name, "-epp-service"))]
    assert [p["port"] for p in router["spec"]["ports"]] == [ROUTER_PORT]


def test_the_pd_service_renders_two_nixl_workloads_with_a_gpu_each() -> None:
    name = "tiny-llama-pd"
    children = _render(llm_service(NS, name, file_url(NS, MODEL_ARCHIVE), prefill=True))
    for suffix, role in (("-kserve", "decode"), ("-kserve-prefill", "prefill")):
        deployment = children[("Deployment", child_name(name, suffix))]
        command = main_command(deployment)
        assert flag(command, "--role") == role
        assert flag(command, "--kv-transfer") == "nixl"
        main = _main(deployment)
        assert main["resources"]["limits"][GPU] == "1"
        side_channel = [e for e in main["env"] if e["name"] == "VLLM_NIXL_SIDE_CHANNEL_HOST"]
        assert side_channel == [
            {
                "name": "VLLM_NIXL_SIDE_CHANNEL_HOST",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
            }
        ]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert workload_labels(name, role).items() <= labels.items()
    assert ("Service", child_name(name, "-epp-service")) in children


@pytest.mark.parametrize(
    ("needed", "allocatable", "runner", "required", "outcome"),
    [
        (2, 2, 2, True, None),
        (1, 4, None, False, None),
        (2, 1, 1, True, "skip"),  # the runner has one GPU: P/D cannot run there
        (2, 0, None, True, "skip"),  # nobody said what the runner has
        (2, 0, 2, False, "skip"),  # a developer's cluster, not required
        (2, 1, 2, True, "fail"),  # the runner has two, the cluster lost one
    ],
)
def test_too_few_gpus_skip_unless_the_runner_has_them(
    needed: int, allocatable: int, runner: int | None, required: bool, outcome: str | None
) -> None:
    shortfall = gpu_shortfall(needed, allocatable, runner, required)
    if outcome is None:
        assert shortfall is None
        return
    assert shortfall is not None
    reason, fail = shortfall
    assert fail == (outcome == "fail")
    assert f"needs {needed} allocatable nvidia.com/gpu, the kind cluster has {allocatable}" in (
        reason
    )


def test_a_stream_is_read_into_its_events() -> None:
    text = 'data: {"a": 1}\n\n: keep-alive\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    assert sse_data(text) == ([{"a": 1}, {"b": 2}], True)
    assert sse_data('data: {"a": 1}\n\n') == ([{"a": 1}], False)
