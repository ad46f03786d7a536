"""The Hugging Face runtime's decisions, pure: task, backend, dtype, device placement, context
length, the vLLM command line, stop strings. None of these needs torch, transformers or vllm."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wharf_model_server.__main__ import build_arg_parser, main
from wharf_model_server.runtimes.huggingface import options as opts
from wharf_model_server.runtimes.huggingface.stops import StopScanner, stop_list
from wharf_model_server.runtimes.huggingface.task import MLTask, choose_task, infer_task

VLLM_ARCHS = frozenset({"LlamaForCausalLM", "BertModel", "BertForSequenceClassification"})


def parse(*argv: str) -> argparse.Namespace:
    args, _ = build_arg_parser(huggingface=True).parse_known_args(list(argv))
    return args


# -- task -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "task"),
    [
        ("BertForSequenceClassification", MLTask.sequence_classification),
        ("DistilBertForTokenClassification", MLTask.token_classification),
        ("BertForMaskedLM", MLTask.fill_mask),
        ("LlamaForCausalLM", MLTask.text_generation),
        ("T5ForConditionalGeneration", MLTask.text2text_generation),
        ("MarianMTModel", MLTask.text2text_generation),
    ],
)
def test_the_task_follows_the_architecture_as_in_kserve(architecture: str, task: MLTask) -> None:
    assert infer_task([architecture]) is task


def test_unservable_or_unknown_architectures_name_the_way_out() -> None:
    with pytest.raises(ValueError, match="question_answering, which is not supported"):
        infer_task(["BertForQuestionAnswering"])
    with pytest.raises(ValueError, match=r"cannot be inferred: set --task"):
        infer_task(["BertModel"])
    with pytest.raises(ValueError, match="names no architectures"):
        infer_task([])


def test_the_task_flag_wins_and_takes_kserve_spellings() -> None:
    assert choose_task("text_embedding", ["BertModel"]) is MLTask.text_embedding
    assert choose_task("Fill-Mask", ["LlamaForCausalLM"]) is MLTask.fill_mask
    with pytest.raises(ValueError, match="--task 'translate' is not a task"):
        choose_task("translate", ["BertModel"])
    with pytest.raises(ValueError, match="time_series_forecast is not supported"):
        choose_task("time_series_forecast", None)


# -- backend ----------------------------------------------------------------------------------


def test_auto_takes_vllm_for_generation_it_supports() -> None:
    choice = opts.choose_backend("auto", MLTask.text_generation, ["LlamaForCausalLM"], VLLM_ARCHS)
    assert choice.backend == "vllm"


def test_auto_falls_back_to_transformers() -> None:
    gen = MLTask.text_generation
    assert opts.choose_backend("auto", gen, ["GPT2LMHeadModel"], VLLM_ARCHS).backend == (
        "huggingface"
    )
    assert opts.choose_backend("auto", gen, ["LlamaForCausalLM"], None).backend == "huggingface"
    # vLLM knows BERT, but V1/V2 predict is served by the transformers backend only.
    cls = opts.choose_backend(
        "auto", MLTask.sequence_classification, ["BertForSequenceClassification"], VLLM_ARCHS
    )
    assert cls.backend == "huggingface"


def test_backend_flags_are_obeyed_or_refused_clearly() -> None:
    gen = MLTask.text_generation
    assert opts.choose_backend("huggingface", gen, ["LlamaForCausalLM"], VLLM_ARCHS).backend == (
        "huggingface"
    )
    with pytest.raises(ValueError, match="vllm cannot be imported"):
        opts.choose_backend("vllm", gen, ["LlamaForCausalLM"], None)
    with pytest.raises(ValueError, match="use --backend huggingface"):
        opts.choose_backend("vllm", MLTask.fill_mask, ["BertForMaskedLM"], VLLM_ARCHS)


# -- dtype and context length -----------------------------------------------------------------


def test_dtype_auto_is_the_configs_else_float32_on_cpu() -> None:
    assert opts.hf_dtype_name("auto", None, cuda=False) == "float32"
    assert opts.hf_dtype_name("auto", "float32", cuda=False) == "float32"
    assert opts.hf_dtype_name("auto", "bfloat16", cuda=False) == "bfloat16"
    assert opts.hf_dtype_name("auto", "torch.float16", cuda=False) == "float16"
    assert opts.hf_dtype_name("half", "float32", cuda=False) == "float16"


def test_dtype_auto_on_gpu_is_float16_unless_the_checkpoint_is_a_half_type() -> None:
    # KServe's GPU default (and vLLM's for a float32 checkpoint) ...
    assert opts.hf_dtype_name("auto", None, cuda=True) == "float16"
    assert opts.hf_dtype_name("auto", "float32", cuda=True) == "float16"
    assert opts.hf_dtype_name("auto", "float", cuda=True) == "float16"
    # ... but a bfloat16 checkpoint is not squeezed into float16's range.
    assert opts.hf_dtype_name("auto", "bfloat16", cuda=True) == "bfloat16"
    assert opts.hf_dtype_name("auto", "torch.bfloat16", cuda=True) == "bfloat16"
    # An explicit flag always wins.
    assert opts.hf_dtype_name("float32", "bfloat16", cuda=True) == "float32"
    assert opts.hf_dtype_name("float", None, cuda=True) == "float32"


# -- device placement -------------------------------------------------------------------------


def test_placement_is_the_cpu_without_a_gpu() -> None:
    for accelerate in (False, True):
        placed = opts.choose_placement(cuda=False, gpus=0, accelerate=accelerate, splittable=True)
        assert placed == opts.Placement("cpu", None)
    # torch reporting CUDA with no device to count is treated as no GPU
    assert opts.choose_placement(True, 0, True, True) == opts.Placement("cpu", None)


def test_placement_on_one_gpu_loads_straight_onto_it() -> None:
    assert opts.choose_placement(True, 1, accelerate=True, splittable=True) == opts.Placement(
        "cuda", "cuda"
    )
    # without accelerate transformers refuses any device_map: load, then move
    assert opts.choose_placement(True, 1, accelerate=False, splittable=True) == opts.Placement(
        "cuda", None
    )


def test_placement_on_several_gpus_spreads_splittable_models() -> None:
    assert opts.choose_placement(True, 4, True, splittable=True) == opts.Placement("cuda", "auto")
    assert opts.choose_placement(True, 4, True, splittable=False) == opts.Placement("cuda", "cuda")
    assert opts.choose_placement(True, 4, False, splittable=True) == opts.Placement("cuda", None)


def test_context_length_is_the_smallest_config_key_and_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = {"max_position_embeddings": 512, "n_positions": 1024}
    assert opts.max_model_len(config, None) == 512
    assert opts.max_model_len(config, 128) == 128
    assert opts.max_model_len({}, None) == opts.DEFAULT_MAX_MODEL_LEN
    with pytest.raises(ValueError, match=r"above the model.s 512.*ALLOW_LONG_MAX_MODEL_LEN"):
        opts.max_model_len(config, 4096)
    monkeypatch.setenv("ALLOW_LONG_MAX_MODEL_LEN", "1")
    assert opts.max_model_len(config, 4096) == 4096


# -- the command line -------------------------------------------------------------------------


def test_kserve_flags_parse_with_their_defaults() -> None:
    args = parse("--model_format", "huggingface", "--model_name", "m")
    assert (args.backend, args.dtype, args.task, args.model_id) == ("auto", "auto", None, None)
    assert opts.model_source(args) == "/mnt/models"
    args = parse("--model_id", "org/model", "--model_dir", "/x", "--max_length", "64")
    assert opts.model_source(args) == "org/model"
    assert args.max_model_len == 64
    with pytest.raises(SystemExit):  # KServe's flags are exclusive, as there
        parse("--return_probabilities", "--return_raw_logits")


def test_the_vllm_command_line_carries_named_and_unknown_flags() -> None:
    args = parse(
        "--model_name", "chat", "--dtype", "bfloat16", "--max_model_len", "512",
        "--tensor_parallel_size", "2", "--gpu_memory_utilization", "0.8",
        "--served_model_name", "served",
    )  # fmt: skip
    argv = opts.vllm_engine_argv(args, "/mnt/models", ["--enforce_eager", "--max_num_seqs=4"])
    assert argv == [
        "--model", "/mnt/models", "--served-model-name", "served", "--dtype", "bfloat16",
        "--max-model-len", "512", "--tensor-parallel-size", "2",
        "--gpu-memory-utilization", "0.8", "--enforce-eager", "--max-num-seqs=4",
    ]  # fmt: skip
    assert opts.served_name(args) == "served"


def test_model_formats() -> None:
    assert opts.wants_huggingface("huggingface")
    assert opts.wants_huggingface("vLLM")
    assert not opts.wants_huggingface("sklearn")
    assert not opts.wants_huggingface(None)


# -- stop strings -----------------------------------------------------------------------------


def run_scanner(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    sent = "".join(scanner.feed(p) for p in pieces) + scanner.flush()
    return sent, scanner.stopped


def test_a_stop_split_over_pieces_is_caught_and_not_sent() -> None:
    assert run_scanner(("END",), ["hello E", "N", "D and more"]) == ("hello ", True)
    assert run_scanner(("END",), ["hello E", "nd"]) == ("hello End", False)
    assert run_scanner((), ["a", "b"]) == ("ab", False)
    assert run_scanner(("x", "yz"), ["ay", "zx"]) == ("a", True)


def test_stop_lists_are_bounded() -> None:
    assert stop_list(None) == ()
    assert stop_list("s") == ("s",)
    with pytest.raises(ValueError, match="at most 16"):
        stop_list([str(i) for i in range(17)])
    with pytest.raises(ValueError, match="at most 256 characters"):
        stop_list(["x" * 300])


def test_the_server_stops_with_a_clear_message_before_loading_anything(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SystemExit, match=f"--model_dir {missing} does not exist"):
        main(["--model_format", "huggingface", "--model_dir", str(missing)])
    with pytest.raises(SystemExit, match="--workers must be 1"):
        main(["--model_format", "huggingface", "--workers", "2"])
    try:
        import transformers  # noqa: F401
    except ImportError:  # the workspace environment: the message names the way out
        with pytest.raises(SystemExit, match="LLM engine environment"):
            main(["--model_format", "huggingface", "--model_dir", str(tmp_path)])
