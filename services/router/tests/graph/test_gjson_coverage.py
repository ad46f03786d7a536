"""gjson-py against the GJSON that KServe's docs and tests write in `condition`: what holds,
what does not, and what gjson-py does not parse (the docs page on InferenceGraph conditions)."""

from __future__ import annotations

import pytest

from wharf_router.graph.decisions import NOT_PARSED, condition_holds, parse_json

REQUEST = parse_json(
    b'{"instances": [{"intval": 5, "modelId": "1", "name": "dog"},'
    b' {"intval": 12, "modelId": "2", "name": "cat"}],'
    b' "predictions": [1, 0, 2], "nested": {"deep": {"label": "dog", "score": 0.93}},'
    b' "flag": false, "nothing": null, "source": "client"}'
)


@pytest.mark.parametrize(
    "condition",
    [
        "instances.#(intval>10)",  # KServe docs: a query with a comparison
        "instances.#(intval>=12)",
        "instances.#(intval<10)",
        "instances.#(intval!=5)",
        'instances.#(modelId=="1")',  # KServe's router tests
        'instances.#(name%"d*")',  # pattern match
        "instances.#(intval>1)#",  # every match
        "predictions.0",  # an index
        "predictions.#(==2)",  # a query on plain values
        "predictions.#",  # the length
        "nested.deep.label",  # nested paths
        "nested.deep",
        "flag",  # a present false counts: GJSON's Exists()
        "nothing",  # and so does a present null
        "source",
    ],
)
def test_conditions_that_hold(condition: str) -> None:
    assert condition_holds(REQUEST, condition)


@pytest.mark.parametrize(
    "condition",
    [
        "instances.#(intval>100)",
        'instances.#(modelId=="3")',
        "predictions.7",
        "predictions.#(==9)",
        "nested.deep.missing",
        "absent",
        "",  # no condition never matches (KServe: Exists() of an empty path)
    ],
)
def test_conditions_that_do_not_hold(condition: str) -> None:
    assert not condition_holds(REQUEST, condition)


def test_every_match_with_none_selected_is_an_empty_list_that_exists() -> None:
    # Go's gjson answers `[]` for `#(...)#` without matches, and `[]` exists
    assert condition_holds(REQUEST, "instances.#(intval>100)#")


def test_what_gjson_py_does_not_parse_is_false_not_an_error() -> None:
    # Go's gjson compares unquoted words; gjson-py refuses them: documented in docs/router.md
    assert not condition_holds(REQUEST, "[@this].#(source==client)")


def test_a_body_that_is_not_json_matches_nothing() -> None:
    assert parse_json(b"not json") is NOT_PARSED
    assert parse_json(b"") is NOT_PARSED
    assert not condition_holds(NOT_PARSED, "instances")
