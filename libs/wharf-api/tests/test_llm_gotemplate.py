"""KServe's preset templates render here as they render in KServe (Go text/template run over
the config's JSON text, missingkey=error)."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import parse_object
from wharf_api.llm.gotemplate import TemplateError, render
from wharf_api.llm.template_context import (
    GlobalConfig,
    child_name,
    quantity_value,
    template_data,
    template_funcs,
)
from wharf_api.resources import LLMInferenceService


def svc(spec: dict[str, Any] | None = None, **meta: Any) -> LLMInferenceService:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha2",
            "kind": "LLMInferenceService",
            "metadata": {"name": "llama", "namespace": "team", **meta},
            "spec": {"model": {"uri": "hf://org/llama", "name": "org/llama"}, **(spec or {})},
        }
    )
    assert isinstance(obj, LLMInferenceService)
    return obj


def r(template: str, obj: LLMInferenceService | None = None, **gc: Any) -> str:
    data = template_data(obj or svc(), GlobalConfig(**gc))
    return render(template, data, template_funcs())


def test_field_paths_read_the_service_with_go_names() -> None:
    assert r("--served-model-name {{ .Spec.Model.Name }}") == "--served-model-name org/llama"
    assert r("/{{ .ObjectMeta.Namespace }}/{{ .ObjectMeta.Name }}/v1") == "/team/llama/v1"
    # ObjectMeta's fields are promoted, as Go promotes embedded fields
    assert r("{{ .Name }}.{{ .Namespace }}") == "llama.team"
    assert r("{{ .Spec.Model.URI }}") == "hf://org/llama"


def test_global_config() -> None:
    assert r("{{ .GlobalConfig.IngressGatewayName }}", ingress_gateway_name="gw") == "gw"
    tls = "{{ if .GlobalConfig.EnableTLS }}HTTPS{{else}}HTTP{{- end }}"
    assert r(tls) == "HTTP"
    assert r(tls, enable_tls=True) == "HTTPS"


def test_pointers_follow_go_rules() -> None:
    cond = "{{- if and .Spec.Parallelism .Spec.Parallelism.Tensor }} --tp {{ .Spec.Parallelism.Tensor }}{{- end }}"
    assert r("x " + cond) == "x"  # nil pointer is false, and `and` stops there
    assert r("x " + cond, svc({"parallelism": {"tensor": 4}})) == "x --tp 4"
    # a set pointer is true even when it points at 0
    assert (
        r("{{ if .Spec.Parallelism.Data }}set{{ end }}", svc({"parallelism": {"data": 0}})) == "set"
    )
    # or returns its first true argument
    assert r("{{ or .Spec.Parallelism.DataLocal 1 }}", svc({"parallelism": {}})) == "1"
    assert (
        r("{{ or .Spec.Parallelism.DataLocal 1 }}", svc({"parallelism": {"dataLocal": 2}})) == "2"
    )
    # dataRPCPort is spelled DataRPCPort in Go
    assert (
        r(
            "{{ if .Spec.Parallelism.DataRPCPort }}{{ .Spec.Parallelism.DataRPCPort }}{{ else }}5555{{- end }}",
            svc({"parallelism": {"dataRPCPort": 6000}}),
        )
        == "6000"
    )
    # expert is a plain bool
    assert (
        r("{{ if .Spec.Parallelism.Expert }}ep{{ end }}", svc({"parallelism": {"expert": False}}))
        == ""
    )
    # a nil pointer prints as Go prints it
    assert r("{{ .Spec.Replicas }}") == "<nil>"


def test_reading_through_a_nil_pointer_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"nil pointer evaluating \.Spec\.Parallelism\.Tensor"):
        r("{{ .Spec.Parallelism.Tensor }}")


def test_unknown_fields_and_functions_are_errors() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Modle"):
        r("{{ .Spec.Modle.Name }}")
    with pytest.raises(TemplateError, match='function "upper" not defined'):
        r("{{ upper .Name }}")
    with pytest.raises(TemplateError, match="map has no entry for key"):
        r("{{ .ObjectMeta.Labels.team }}")
    assert r("{{ .ObjectMeta.Labels.team }}", svc(labels={"team": "a"})) == "a"


def test_json_text_rules_of_kserve() -> None:
    # KServe executes the JSON text: a double-quoted string is \" there, which Go rejects
    with pytest.raises(TemplateError, match="double-quoted"):
        r('{{ ChildName .ObjectMeta.Name "-x" }}')
    assert r("{{ ChildName .ObjectMeta.Name `-kserve-self-signed-certs` }}") == (
        "llama-kserve-self-signed-certs"
    )
    # trim markers remove spaces, never the line break (an escape in JSON text)
    assert r("a \\\n   {{- if true }} b{{- end }} \\\n") == "a \\\n b \\\n"
    with pytest.raises(TemplateError, match="line break"):
        r("{{ if\ntrue }}x{{ end }}")
    with pytest.raises(TemplateError, match="pipeline"):
        r("{{ .Name | printf }}")


def test_unsupported_actions_and_syntax() -> None:
    with pytest.raises(TemplateError, match="range"):
        r("{{ range .Spec.BaseRefs }}x{{ end }}")
    with pytest.raises(TemplateError, match="without"):
        r("{{ if true }}x")
    with pytest.raises(TemplateError, match="unclosed"):
        r("{{ .Name ")


def test_shutdown_timeout() -> None:
    assert r("{{ shutdownTimeout .Spec.Template 15 }}") == "40"  # 60 - 15 - 5
    grace = svc({"template": {"terminationGracePeriodSeconds": 30, "containers": []}})
    assert r("{{ shutdownTimeout .Spec.Template 15 }}", grace) == "10"
    assert r("{{ shutdownTimeout nil 15 }}") == "40"
    short = svc({"template": {"terminationGracePeriodSeconds": 4, "containers": []}})
    assert r("{{ shutdownTimeout .Spec.Template 15 }}", short) == "0"


def test_kv_transfer_config_survives_the_json_round_trip() -> None:
    kv = svc({"kvCacheOffloading": {"cpu": "2Gi", "evictionPolicy": "arc"}})
    out = r('KV="{{ kvTransferConfig .Spec.KVCacheOffloading }}"', kv)
    assert out == (
        'KV="--kv-transfer-config \'{\\"kv_connector\\":\\"OffloadingConnector\\",'
        '\\"kv_connector_extra_config\\":{\\"cpu_bytes_to_use\\":2147483648,'
        '\\"eviction_policy\\":\\"arc\\",\\"spec_name\\":\\"TieringOffloadingSpec\\"},'
        '\\"kv_role\\":\\"kv_both\\"}\'"'
    )
    assert r("[{{ kvTransferConfig .Spec.KVCacheOffloading }}]") == "[]"


def test_child_name_matches_knative() -> None:
    assert child_name("llama", "-inference-pool") == "llama-inference-pool"
    long = "a" * 60
    name = child_name(long, "-inference-pool")
    assert len(name) == 63 and name.endswith("-inference-pool")
    assert name.startswith("a" * (31 - len("-inference-pool")))


def test_quantity_value() -> None:
    assert quantity_value("1Gi") == 1 << 30
    assert quantity_value("1.5k") == 1500
    assert quantity_value("100m") == 1  # rounded up, as resource.Quantity.Value()
