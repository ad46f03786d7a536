"""Which task a model serves: `--task`, or inferred from its architecture as KServe does. Pure."""

from __future__ import annotations

from enum import StrEnum


class MLTask(StrEnum):
    """KServe's task names (`--task` takes these, case-insensitive)."""

    sequence_classification = "sequence_classification"
    token_classification = "token_classification"
    fill_mask = "fill_mask"
    text_generation = "text_generation"
    text2text_generation = "text2text_generation"
    text_embedding = "text_embedding"
    # Known to KServe, not served (KServe rejects them too, time series aside).
    question_answering = "question_answering"
    table_question_answering = "table_question_answering"
    multiple_choice = "multiple_choice"
    time_series_forecast = "time_series_forecast"


SUPPORTED_TASKS = (
    MLTask.sequence_classification,
    MLTask.token_classification,
    MLTask.fill_mask,
    MLTask.text_generation,
    MLTask.text2text_generation,
    MLTask.text_embedding,
)

GENERATIVE_TASKS = frozenset({MLTask.text_generation, MLTask.text2text_generation})

# Suffix of the architecture name -> task; the first suffix that matches wins (KServe's order,
# so `TapasForQuestionAnswering` is table QA before the generic `ForQuestionAnswering`).
ARCHITECTURE_SUFFIXES: tuple[tuple[str, MLTask], ...] = (
    ("TapasForQuestionAnswering", MLTask.table_question_answering),
    ("ForQuestionAnswering", MLTask.question_answering),
    ("ForTokenClassification", MLTask.token_classification),
    ("ForSequenceClassification", MLTask.sequence_classification),
    ("ForMultipleChoice", MLTask.multiple_choice),
    ("ForMaskedLM", MLTask.fill_mask),
    ("ForCausalLM", MLTask.text_generation),
    ("ForConditionalGeneration", MLTask.text2text_generation),
    ("MTModel", MLTask.text2text_generation),
    ("EncoderDecoderModel", MLTask.text2text_generation),
    ("ForPrediction", MLTask.time_series_forecast),
)

_NAMES = ", ".join(t.value for t in SUPPORTED_TASKS)


def parse_task(name: str) -> MLTask:
    """`--task` (KServe's names; `-` and `_` alike, any case) -> a supported task."""
    key = name.strip().lower().replace("-", "_")
    try:
        task = MLTask(key)
    except ValueError:
        raise ValueError(f"--task {name!r} is not a task; supported: {_NAMES}") from None
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"--task {task.value} is not supported; supported: {_NAMES}")
    return task


def infer_task(architectures: list[str] | None) -> MLTask:
    """The task of a model from the first entry of its config's `architectures`."""
    if not architectures:
        raise ValueError(f"the model's config.json names no architectures: set --task ({_NAMES})")
    architecture = architectures[0]
    for suffix, task in ARCHITECTURE_SUFFIXES:
        if architecture.endswith(suffix):
            if task not in SUPPORTED_TASKS:
                raise ValueError(
                    f"architecture {architecture} is for {task.value}, which is not "
                    f"supported; supported: {_NAMES}"
                )
            return task
    raise ValueError(
        f"the task of architecture {architecture} cannot be inferred: set --task ({_NAMES})"
    )


def choose_task(task_flag: str | None, architectures: list[str] | None) -> MLTask:
    return parse_task(task_flag) if task_flag else infer_task(architectures)


def is_generative(task: MLTask) -> bool:
    return task in GENERATIVE_TASKS
