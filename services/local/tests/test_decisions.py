"""The local runtime's pure decisions: backoff, autoscaling, routing, status."""

from __future__ import annotations

from pathlib import Path

from wharf_api.status import ComponentReadiness, conditions
from wharf_local.autoscaler import Bounds, Observation, recommend
from wharf_local.backoff import crashes_in_a_row, restart_delay
from wharf_local.manifests import resolve_local_paths
from wharf_local.render import traffic_columns
from wharf_local.routing import host_table, route


def test_restart_delay_doubles_up_to_the_cap() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert restart_delay(20) == 30.0


def test_crash_count_resets_after_a_long_run() -> None:
    assert crashes_in_a_row(3, uptime_s=0.5) == 4
    assert crashes_in_a_row(3, uptime_s=600) == 1


CONCURRENCY = Bounds(min_replicas=1, max_replicas=4, metric="concurrency", target=2)


def obs(concurrency: float = 0, rps: float = 0, idle: float = 0, waiting: int = 0) -> Observation:
    return Observation(concurrency=concurrency, rps=rps, idle_s=idle, waiting=waiting)


def test_replicas_follow_concurrency_over_the_target() -> None:
    assert recommend(CONCURRENCY, obs(concurrency=5), 1, scale_to_zero_after_s=30) == 3
    assert recommend(CONCURRENCY, obs(concurrency=4), 1, scale_to_zero_after_s=30) == 2
    assert recommend(CONCURRENCY, obs(concurrency=100), 1, scale_to_zero_after_s=30) == 4
    assert recommend(CONCURRENCY, obs(), 3, scale_to_zero_after_s=30) == 1


def test_rps_metric_reads_requests_per_second() -> None:
    bounds = Bounds(1, 10, "rps", 5)
    assert recommend(bounds, obs(concurrency=50, rps=12), 1, scale_to_zero_after_s=30) == 3


ZERO = Bounds(min_replicas=0, max_replicas=3, metric="concurrency", target=5)


def test_scale_to_zero_only_after_the_idle_grace() -> None:
    assert recommend(ZERO, obs(idle=5), 1, scale_to_zero_after_s=30) == 1
    assert recommend(ZERO, obs(idle=31), 1, scale_to_zero_after_s=30) == 0
    assert recommend(ZERO, obs(idle=100), 0, scale_to_zero_after_s=30) == 0


def test_a_held_request_wakes_a_revision_at_zero() -> None:
    assert recommend(ZERO, obs(idle=0, waiting=1), 0, scale_to_zero_after_s=30) == 1


def test_min_replicas_is_a_floor() -> None:
    bounds = Bounds(2, 5, "concurrency", 10)
    assert recommend(bounds, obs(idle=1000), 2, scale_to_zero_after_s=1) == 2


HOSTS = host_table([("default", "iris", ["predictor", "transformer"])], "example.com")


def test_route_by_host_with_or_without_port() -> None:
    for host in (
        "iris-default.example.com",
        "iris-default.example.com:8080",
        "IRIS-default.example.com",
    ):
        target = route(host, "/v1/models/iris:predict", HOSTS)
        assert target is not None
        assert (target.namespace, target.name, target.component) == ("default", "iris", None)
        assert target.path == "/v1/models/iris:predict"


def test_route_by_component_host() -> None:
    target = route("iris-predictor-default.example.com", "/v2/health/ready", HOSTS)
    assert target is not None and target.component == "predictor"


def test_route_by_path_strips_the_prefix() -> None:
    target = route("localhost:8080", "/serving/team/iris/v2/models/iris/infer", HOSTS)
    assert target is not None
    assert (target.namespace, target.name, target.path) == ("team", "iris", "/v2/models/iris/infer")
    bare = route(None, "/serving/team/iris", HOSTS)
    assert bare is not None and bare.path == "/"


def test_unknown_host_and_path_do_not_route() -> None:
    assert route("other.example.com", "/v1/models/x:predict", HOSTS) is None
    assert route(None, "/serving/only-namespace", HOSTS) is None


def test_ready_needs_every_component_and_the_route() -> None:
    ready = [ComponentReadiness("predictor", True), ComponentReadiness("transformer", True)]
    out = {c.type: c for c in conditions(ready, True, "t1")}
    assert {k: c.status for k, c in out.items()} == {
        "PredictorReady": "True",
        "TransformerReady": "True",
        "IngressReady": "True",
        "Ready": "True",
    }
    failing = [ComponentReadiness("predictor", False, "CrashLoopBackOff", "exit 3"), ready[1]]
    out = {c.type: c for c in conditions(failing, True, "t2")}
    assert out["Ready"].status == "False"
    assert (out["Ready"].reason, out["Ready"].message) == ("CrashLoopBackOff", "exit 3")
    assert out["PredictorReady"].reason == "CrashLoopBackOff"


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = conditions([ComponentReadiness("predictor", True)], True, "t1")
    same = conditions([ComponentReadiness("predictor", True)], True, "t2", first)
    assert {c.last_transition_time for c in same} == {"t1"}
    changed = conditions([ComponentReadiness("predictor", False, "X", "y")], True, "t3", same)
    assert {c.type: c.last_transition_time for c in changed}["Ready"] == "t3"


def test_prev_and_latest_columns() -> None:
    item = {
        "status": {
            "components": {
                "predictor": {
                    "traffic": [
                        {
                            "revisionName": "b",
                            "percent": 20,
                            "tag": "latest",
                            "latestRevision": True,
                        },
                        {
                            "revisionName": "a",
                            "percent": 80,
                            "tag": "prev",
                            "latestRevision": False,
                        },
                    ]
                }
            }
        }
    }
    assert traffic_columns(item) == ("80", "20")


def test_route_by_component_path() -> None:
    target = route(None, "/serving/default/iris-predictor/v1/models/iris:predict", HOSTS)
    assert target is not None
    assert (target.name, target.component, target.path) == (
        "iris",
        "predictor",
        "/v1/models/iris:predict",
    )


def test_relative_storage_uris_resolve_beside_the_manifest(tmp_path: Path) -> None:
    doc = {
        "spec": {
            "predictor": {
                "model": {"storageUri": "../models/iris"},
                "storageUris": [{"uri": "./a", "mountPath": "/mnt/a"}, {"uri": "s3://b/c"}],
            }
        }
    }
    out = resolve_local_paths(doc, tmp_path / "examples")
    assert out["spec"]["predictor"]["model"]["storageUri"] == (tmp_path / "models/iris").as_uri()
    uris = [u["uri"] for u in out["spec"]["predictor"]["storageUris"]]
    assert uris == [(tmp_path / "examples/a").as_uri(), "s3://b/c"]
    assert doc["spec"]["predictor"]["model"]["storageUri"] == "../models/iris"
