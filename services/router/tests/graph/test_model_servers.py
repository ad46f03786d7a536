"""Every node type and dependency mode, through the real `wharf-router` command, against real
`wharf-model-server` processes (and small real HTTP servers where a behaviour needs one: an
echo of headers, a step that does not answer in time)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from graph_kit import INSTANCES, ROUTER, Models, StartRouter, http_server

from wharf_e2e.testing import free_port, wait_until

# the first test also starts the three model servers (up to 180 s each on a loaded machine)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def graph(**nodes: Any) -> dict[str, Any]:
    return {"nodes": nodes}


def direct(url: str, body: Any) -> httpx.Response:
    return httpx.post(url, json=body, timeout=60)


BODY = {"instances": INSTANCES}


# ---- Sequence ----------------------------------------------------------------------------------


def test_sequence_chains_predictions_into_instances(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(
            root={
                "routerType": "Sequence",
                "steps": [
                    {"name": "proba", "serviceUrl": models.proba},
                    {
                        "name": "judge",
                        "serviceUrl": models.judge,
                        "data": "$response",
                        "mapPredictionsToInstances": True,
                    },
                ],
            }
        )
    )
    answer = router.post(BODY)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    probabilities = direct(models.proba, BODY).json()["predictions"]
    expected = direct(models.judge, {"instances": probabilities}).json()
    assert answer.json() == expected
    assert len(expected["predictions"]) == 2


def test_sequence_request_data_sends_every_step_the_original_request(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(
            root={
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": models.proba},
                    {"serviceUrl": models.iris, "data": "$request"},
                ],
            }
        )
    )
    assert router.post(BODY).json() == direct(models.iris, BODY).json()


def test_sequence_condition_on_the_previous_answer(
    models: Models, start_router: StartRouter
) -> None:
    first = direct(models.iris, BODY).json()["predictions"][0]

    def chain(condition: str) -> dict[str, Any]:
        return graph(
            root={
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": models.iris},
                    {"serviceUrl": models.proba, "data": "$request", "condition": condition},
                ],
            }
        )

    holds = start_router(chain(f"predictions.#(=={first})"))
    assert holds.post(BODY).json() == direct(models.proba, BODY).json()
    # the condition does not hold: the sequence stops with the answer so far, 200
    stops = start_router(chain("predictions.#(==7)"))
    answer = stops.post(BODY)
    assert answer.status_code == 200
    assert answer.json() == direct(models.iris, BODY).json()


def test_a_condition_on_the_first_sequence_step_has_no_answer_to_test(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(
            root={
                "routerType": "Sequence",
                "steps": [{"serviceUrl": models.iris, "condition": "predictions"}],
            }
        )
    )
    answer = router.post(BODY)
    assert answer.status_code == 500
    assert answer.json() == {"error": "Failed to process request", "cause": "invalid response"}


def test_hard_step_failure_stops_the_sequence_with_its_own_status_and_body(
    models: Models, start_router: StartRouter
) -> None:
    own = direct(models.missing, BODY)
    assert own.status_code == 404
    router = start_router(
        graph(
            root={
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": models.missing, "dependency": "Hard"},
                    {"serviceUrl": models.iris},
                ],
            }
        )
    )
    answer = router.post(BODY)
    assert answer.status_code == 404
    assert answer.json() == own.json()


def test_soft_step_failure_lets_the_sequence_go_on(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(
            root={
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": models.missing, "dependency": "Soft"},
                    {"serviceUrl": models.iris},
                ],
            }
        )
    )
    answer = router.post(BODY)
    assert answer.status_code == 200
    assert answer.json() == direct(models.iris, BODY).json()


def test_the_last_step_answers_with_its_own_status(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": models.missing}]})
    )
    answer = router.post(BODY)
    assert answer.status_code == 404
    assert answer.json() == direct(models.missing, BODY).json()


# ---- Switch ------------------------------------------------------------------------------------


def switch_graph(models: Models) -> dict[str, Any]:
    return graph(
        root={
            "routerType": "Switch",
            "steps": [
                {"serviceUrl": models.proba, "condition": 'options.#(kind=="proba")'},
                {"serviceUrl": models.iris, "condition": "options.#(limit>10)"},
            ],
        }
    )


def test_switch_takes_the_first_step_whose_condition_holds_on_the_request(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(switch_graph(models))
    to_proba = {**BODY, "options": [{"kind": "proba", "limit": 50}]}
    assert router.post(to_proba).json() == direct(models.proba, BODY).json()
    to_iris = {**BODY, "options": [{"kind": "labels", "limit": 50}]}
    assert router.post(to_iris).json() == direct(models.iris, BODY).json()


def test_switch_without_a_match_is_kserves_404(models: Models, start_router: StartRouter) -> None:
    router = start_router(switch_graph(models))
    answer = router.post({**BODY, "options": [{"kind": "labels", "limit": 1}]})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "Failed to process request",
        "cause": "None of the routes matched with the switch condition",
    }
    not_json = httpx.post(router.url, content=b"not json", timeout=30)
    assert not_json.status_code == 404


# ---- Ensemble ----------------------------------------------------------------------------------


def test_ensemble_merges_answers_keyed_by_step_name_or_index(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(
            root={
                "routerType": "Ensemble",
                "steps": [
                    {"name": "labels", "serviceUrl": models.iris},
                    {"serviceUrl": models.proba},
                ],
            }
        )
    )
    answer = router.post(BODY)
    assert answer.status_code == 200
    assert answer.json() == {
        "labels": direct(models.iris, BODY).json(),
        "1": direct(models.proba, BODY).json(),
    }


def test_ensemble_soft_failure_is_merged_and_hard_failure_answers(
    models: Models, start_router: StartRouter
) -> None:
    own = direct(models.missing, BODY)

    def ensemble(dependency: str) -> dict[str, Any]:
        return graph(
            root={
                "routerType": "Ensemble",
                "steps": [
                    {"name": "labels", "serviceUrl": models.iris},
                    {"name": "gone", "serviceUrl": models.missing, "dependency": dependency},
                ],
            }
        )

    soft = start_router(ensemble("Soft")).post(BODY)
    assert soft.status_code == 200
    assert soft.json() == {"labels": direct(models.iris, BODY).json(), "gone": own.json()}
    hard = start_router(ensemble("Hard")).post(BODY)
    assert hard.status_code == 404
    assert hard.json() == own.json()


# ---- Splitter ----------------------------------------------------------------------------------


def test_splitter_follows_the_weights(models: Models, start_router: StartRouter) -> None:
    def split(iris: int, proba: int) -> dict[str, Any]:
        return graph(
            root={
                "routerType": "Splitter",
                "steps": [
                    {"serviceUrl": models.iris, "weight": iris},
                    {"serviceUrl": models.proba, "weight": proba},
                ],
            }
        )

    labels, probabilities = direct(models.iris, BODY).json(), direct(models.proba, BODY).json()
    all_iris = start_router(split(100, 0))
    assert all(all_iris.post(BODY).json() == labels for _ in range(10))
    halves = start_router(split(50, 50))
    seen: list[Any] = []

    def both_sides() -> bool:
        seen.append(halves.post(BODY).json())
        return labels in seen and probabilities in seen

    # each draw is 50/50: both sides show up long before this bound
    wait_until(both_sides, "both sides of a 50/50 split", 120, every_s=0)


def test_splitter_weights_short_of_100_can_select_nothing(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(root={"routerType": "Splitter", "steps": [{"serviceUrl": models.iris, "weight": 0}]})
    )
    answer = router.post(BODY)
    assert answer.status_code == 500
    assert answer.json()["cause"] == "no route was selected by the splitter"


# ---- nested nodes, paths, errors ---------------------------------------------------------------


def test_nested_nodes(models: Models, start_router: StartRouter) -> None:
    router = start_router(
        graph(
            root={
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": models.iris},
                    {"nodeName": "both", "data": "$request"},
                ],
            },
            both={
                "routerType": "Ensemble",
                "steps": [
                    {"name": "labels", "nodeName": "pick"},
                    {"name": "proba", "serviceUrl": models.proba},
                ],
            },
            pick={"routerType": "Splitter", "steps": [{"serviceUrl": models.iris, "weight": 100}]},
        )
    )
    answer = router.post(BODY)
    assert answer.status_code == 200
    assert answer.json() == {
        "labels": direct(models.iris, BODY).json(),
        "proba": direct(models.proba, BODY).json(),
    }


def test_any_path_runs_the_graph_from_root_and_v2_bodies_pass_through(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": models.iris_v2}]})
    )
    v2 = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": INSTANCES}]}
    answer = httpx.post(f"{router.url}/v2/models/anything/infer", json=v2, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == direct(models.iris_v2, v2).json()["outputs"]


def test_a_step_that_cannot_be_reached_is_kserves_500(start_router: StartRouter) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/models/x:predict"
    router = start_router(graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": url}]}))
    answer = router.post(BODY)
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"] == "Failed to process request"
    assert url in body["cause"]


def test_service_client_timeout_bounds_each_step(start_router: StartRouter) -> None:
    release = threading.Event()

    def slow(_: Any, body: bytes) -> tuple[int, Any]:
        release.wait(60)
        return 200, {"late": True}

    with http_server(slow) as url:
        router = start_router(
            {
                "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": url}]}},
                "routerTimeouts": {"serviceClient": 1},
            }
        )
        try:
            answer = router.post(BODY)
        finally:
            release.set()
    assert answer.status_code == 500
    assert "timeout" in answer.json()["cause"].lower()


def test_propagate_headers_forwards_only_matching_headers(start_router: StartRouter) -> None:
    def echo(request: Any, body: bytes) -> tuple[int, Any]:
        return 200, {"headers": {k.lower(): v for k, v in request.headers.items()}}

    with http_server(echo) as url:
        router = start_router(
            graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": url}]}),
            env={"PROPAGATE_HEADERS": "^X-Trace,Authorization"},
        )
        answer = router.post(
            BODY,
            headers={"x-trace-id": "t-1", "authorization": "Bearer k", "x-other": "no"},
        )
    seen = answer.json()["headers"]
    assert seen["x-trace-id"] == "t-1"
    assert seen["authorization"] == "Bearer k"
    assert "x-other" not in seen
    assert seen["content-type"] == "application/json"


def test_readyz_turns_503_on_sigterm_while_requests_are_still_served(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": models.iris}]}),
        "--drain-seconds",
        "60",
    )
    router.proc.send_signal(signal.SIGTERM)
    wait_until(
        lambda: httpx.get(f"{router.url}/readyz", timeout=5).status_code == 503,
        "readyz to answer 503 after SIGTERM",
        30,
    )
    assert httpx.get(f"{router.url}/readyz", timeout=5).text == "shutting down\n"
    assert router.post(BODY).status_code == 200


def test_without_drain_period_sigterm_stops_the_router(
    models: Models, start_router: StartRouter
) -> None:
    router = start_router(
        graph(root={"routerType": "Sequence", "steps": [{"serviceUrl": models.iris}]}),
        "--drain-seconds",
        "0",
    )
    router.proc.send_signal(signal.SIGTERM)
    assert router.proc.wait(30) == 0


def test_graph_file_takes_an_inference_graph_manifest(
    models: Models, start_router: StartRouter, tmp_path: Path
) -> None:
    manifest = tmp_path / "graph.yaml"
    manifest.write_text(
        "apiVersion: serving.kserve.io/v1alpha1\nkind: InferenceGraph\n"
        "metadata: {name: g}\nspec:\n  nodes:\n    root:\n      routerType: Sequence\n"
        f"      steps:\n      - serviceUrl: {models.iris}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(ROUTER), "--graph-file", str(manifest), "--port", str(port)],
        env={**os.environ, "WHARF_BIND_HOST": "127.0.0.1"},
    )
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
            "the router to be ready",
            60,
        )
        answer = httpx.post(f"http://127.0.0.1:{port}/", json=BODY, timeout=60)
        assert answer.json() == direct(models.iris, BODY).json()
    finally:
        proc.kill()
        proc.wait()


def test_a_graph_that_cannot_run_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROUTER), "--graph-json", '{"nodes": {"a": {"routerType": "Sequence"}}}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "the graph needs a node named 'root'" in result.stderr
