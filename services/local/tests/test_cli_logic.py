"""The CLI's pure decisions: kind names, when `up` may judge a service, curls, table columns."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from wharf_local.cli import _verdict
from wharf_local.kinds import resolve_kind
from wharf_local.render import curl_lines, get_table


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("isvc", "InferenceService"),
        ("ISVC", "InferenceService"),
        ("inferenceservices", "InferenceService"),
        ("InferenceService", "InferenceService"),
        ("ig", "InferenceGraph"),
        ("llmisvc", "LLMInferenceService"),
        ("sr", "ServingRuntime"),
        ("servingruntimes", "ServingRuntime"),
        ("csr", "ClusterServingRuntime"),
        ("CSR", "ClusterServingRuntime"),
        ("clusterservingruntime", "ClusterServingRuntime"),
    ],
)
def test_kinds_by_kind_plural_singular_or_short_name(name: str, kind: str) -> None:
    info = resolve_kind(name)
    assert info is not None and info.kind == kind


def test_an_unknown_kind_is_none() -> None:
    assert resolve_kind("deployments") is None


def _item(
    generation: int,
    observed: int,
    ready: dict[str, Any],
    revisions: list[dict[str, Any]],
    latest: str,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "default", "generation": generation},
        "spec": {},
        "status": {
            "url": "http://m-default.example.com",
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", **ready}],
            "components": {"predictor": {"latestCreatedRevision": latest}},
        },
        "local": {"revisions": {"predictor": revisions}},
    }


FAILED = {"status": "False", "reason": "ModelDownloadFailed", "message": "storageUri: nope"}


def test_an_earlier_generations_failure_is_not_this_applys() -> None:
    # generation 3 re-applied the good spec: the status still shows generation 2's failure
    item = _item(
        3,
        1,
        FAILED,
        [
            {"name": "m-predictor-00002", "failure": ["ModelDownloadFailed", "nope"]},
            {"name": "m-predictor-00003", "failure": None},
        ],
        latest="m-predictor-00003",
    )
    assert _verdict(item, 3)[0] is None


def test_a_status_that_reflects_this_generation_is_judged() -> None:
    ready = _item(3, 3, {"status": "True"}, [], latest="m-predictor-00003")
    assert _verdict(ready, 3)[0] is True
    failed = _item(2, 2, FAILED, [], latest="m-predictor-00002")
    verdict, why = _verdict(failed, 2)
    assert verdict is False and why.startswith("ModelDownloadFailed")


def test_ready_of_an_older_generation_is_not_ready_yet() -> None:
    item = _item(2, 1, {"status": "True"}, [], latest="m-predictor-00002")
    assert _verdict(item, 2)[0] is None


def test_a_failure_shown_before_the_status_reflects_this_apply_is_not_judged() -> None:
    # good, bad, good again: until the runtime reports generation 3, the failure of the
    # second apply's revision is still on show, and must not be taken for this apply's
    item = _item(
        3,
        2,
        FAILED,
        [{"name": "m-predictor-00002", "failure": ["ModelDownloadFailed", "nope"]}],
        latest="m-predictor-00002",
    )
    assert _verdict(item, 3)[0] is None


def _service(protocol: str | None) -> dict[str, Any]:
    model: dict[str, Any] = {"modelFormat": {"name": "sklearn"}}
    if protocol:
        model["protocolVersion"] = protocol
    return {
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"predictor": {"model": model}},
        "status": {"url": "http://m-ns.example.com"},
    }


def test_v1_curls_predict_with_instances() -> None:
    by_host, by_path = curl_lines(_service("v1"), "http://127.0.0.1:9", [])
    assert "-H 'Host: m-ns.example.com'" in by_host
    assert "http://127.0.0.1:9/v1/models/m:predict" in by_host
    assert "http://127.0.0.1:9/serving/ns/m/v1/models/m:predict" in by_path
    assert '"instances": [[' in by_host


def test_v2_curls_infer_with_inputs_shaped_from_metadata() -> None:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    by_host, by_path = curl_lines(_service("v2"), "http://127.0.0.1:9", inputs)
    assert "http://127.0.0.1:9/v2/models/m/infer" in by_host
    assert "/serving/ns/m/v2/models/m/infer" in by_path
    assert '"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"' in by_host


def _rendered(table: Any) -> list[str]:
    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text().splitlines()


def test_wide_and_all_namespaces_columns() -> None:
    item = {
        "metadata": {"name": "m", "namespace": "team"},
        "status": {
            "url": "http://m-team.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {
                "predictor": {
                    "latestReadyRevision": "m-predictor-00002",
                    "previousRolledoutRevision": "m-predictor-00001",
                    "traffic": [],
                }
            },
        },
        "local": {"ageSeconds": 5},
    }
    header, row = _rendered(get_table([item], wide=True, namespaces=True))[:2]
    assert header.split() == [
        "NAMESPACE",
        "NAME",
        "URL",
        "READY",
        "PREV",
        "LATEST",
        "PREVROLLEDOUTREVISION",
        "LATESTREADYREVISION",
        "AGE",
    ]
    assert row.split() == [
        "team",
        "m",
        "http://m-team.example.com",
        "True",
        "m-predictor-00001",
        "m-predictor-00002",
        "5s",
    ]


def test_describe_names_the_runtime_each_component_was_given() -> None:
    from wharf_local.render import describe_lines

    item = {
        "metadata": {"name": "m", "namespace": "default", "generation": 1},
        "status": {"conditions": [], "components": {"predictor": {}}},
        "local": {
            "revisions": {"predictor": []},
            "events": [],
            "runtimes": {
                "predictor": {
                    "runtime": "team-sklearn",
                    "kind": "ServingRuntime",
                    "modelFormat": "sklearn",
                    "protocol": "v1",
                    "command": ["my-server", "--model_name=m"],
                }
            },
        },
    }
    lines = describe_lines(item)
    assert (
        "  Runtime:           team-sklearn (ServingRuntime, format sklearn, protocol v1)" in lines
    )
    assert "  Command:           my-server --model_name=m" in lines


def test_an_object_named_in_several_files_is_reported_with_the_one_that_wins() -> None:
    from wharf_local.manifests import repeated_objects

    def doc(name: str, namespace: str | None = None) -> dict[str, Any]:
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        return {"kind": "InferenceService", "metadata": meta}

    warnings = repeated_objects(
        [
            ("a.yaml", doc("iris")),
            ("b.yaml", doc("iris", "default")),
            ("c.yaml", doc("other")),
            ("d.yaml", doc("iris", "team")),
        ]
    )
    assert warnings == [
        "inferenceservice/iris is named 2 times (a.yaml, b.yaml): each is applied in turn "
        "and the last one (b.yaml) wins"
    ]


def test_the_cli_stops_waiting_on_the_same_reasons_as_the_status() -> None:
    from wharf_api.status import TERMINAL_REASONS as API_REASONS
    from wharf_local.cli import TERMINAL_REASONS

    assert TERMINAL_REASONS == API_REASONS


def test_up_shows_new_download_events_once() -> None:
    from wharf_local.cli import _new_events

    events = [
        {"time": "2026-01-01T00:00:00Z", "reason": "Downloading", "message": "old", "object": "r"},
        {
            "time": "2026-01-01T00:00:05Z",
            "reason": "DownloadRetry",
            "message": "503",
            "object": "r",
        },
        {"time": "2026-01-01T00:00:06Z", "reason": "Scaled", "message": "0 -> 1", "object": "r"},
        {"time": "2026-01-01T00:00:07Z", "reason": "Downloading", "message": "50%", "object": "r"},
    ]
    older = {"time": "2026-01-01T00:00:08Z", "reason": "ModelDownloadFailed", "message": "x",
             "object": "r-old"}  # fmt: skip
    item = {
        "status": {"components": {"predictor": {"latestCreatedRevision": "r"}}},
        "local": {"events": [*events, older]},
    }
    seen: set[tuple[str, ...]] = set()
    assert _new_events(item, "2026-01-01T00:00:01Z", seen) == [
        "  r: DownloadRetry: 503",
        "  r: Downloading: 50%",
    ]
    assert _new_events(item, "2026-01-01T00:00:01Z", seen) == []
