"""Names both control planes give a service's parts (KServe's templates and suffixes)."""

from __future__ import annotations

import pytest

from wharf_api.names import (
    TemplateError,
    TemplateValues,
    cluster_url,
    component_host,
    component_service_name,
    isvc_labels,
    local_url,
    render_template,
    revision_name,
    selector_labels,
    service_host,
    service_path,
)


def test_default_host_is_kserves_domain_template() -> None:
    assert service_host("iris", "team") == "iris-team.example.com"
    assert service_host("iris", "team", "models.internal") == "iris-team.models.internal"


def test_custom_domain_template_with_annotations_and_labels() -> None:
    values = TemplateValues(
        "iris", "team", "corp.dev", labels={"tier": "gold"}, annotations={"a/b": "x"}
    )
    template = '{{ .Name }}.{{ index .Labels "tier" }}.{{ .Annotations.a/b }}.{{ .IngressDomain }}'
    assert render_template(template, values) == "iris.gold.x.corp.dev"
    # a missing key renders empty, as Go's templates print a missing map key
    assert render_template("{{ .Labels.none }}-{{ .Name }}", values) == "-iris"


def test_unknown_template_field_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match="Nmae"):
        render_template("{{ .Nmae }}", TemplateValues("a", "b"))


def test_hosts_are_lowercase_dns_names() -> None:
    assert service_host("Iris", "Team") == "iris-team.example.com"


def test_component_names_and_hosts() -> None:
    assert component_service_name("iris", "predictor") == "iris-predictor"
    assert component_host("iris", "transformer", "team") == "iris-transformer-team.example.com"


def test_paths_and_urls() -> None:
    assert service_path("iris", "team") == "/serving/team/iris"
    assert local_url("http://127.0.0.1:8080/", "team", "iris-predictor") == (
        "http://127.0.0.1:8080/serving/team/iris-predictor"
    )
    assert cluster_url("iris-predictor", "team") == ("http://iris-predictor.team.svc.cluster.local")
    assert cluster_url("iris-predictor", "team", port=8081) == (
        "http://iris-predictor.team.svc.cluster.local:8081"
    )


def test_revision_names_are_knatives() -> None:
    assert revision_name("iris-predictor", 12) == "iris-predictor-00012"


def test_selector_labels_are_a_subset_of_the_labels() -> None:
    labels = isvc_labels("iris", "predictor")
    selector = selector_labels("iris", "predictor")
    assert selector.items() <= labels.items()
    assert labels["serving.kserve.io/inferenceservice"] == "iris"
    assert labels["component"] == "predictor"
