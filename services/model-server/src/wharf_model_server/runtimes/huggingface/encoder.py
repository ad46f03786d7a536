"""Encoder tasks on transformers: sequence and token classification, fill-mask (V1/V2 predict)
and text embeddings (V1/V2 predict and `/openai/v1/embeddings`), answered as KServe's
huggingfaceserver answers them.

V1 `{"instances": ["text", ...]}` and V2 one BYTES input are the texts; the answer per text:
- sequence_classification: the class index (`--return_probabilities`: {index: probability},
  `--return_raw_logits`: {index: logit});
- token_classification: the class index of every token (padded to the longest text);
- fill_mask: the predicted token for the `[MASK]` (one string; one list per text when a text
  holds several masks);
- text_embedding: the mean of the last hidden states over the real tokens, L2-normalized.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import numpy as np

from wharf_model_server import executor
from wharf_model_server.model import Model
from wharf_model_server.openai_model import OpenAIEncoderModel
from wharf_model_server.runtimes.huggingface.task import MLTask
from wharf_model_server.utils import generate_uuid, get_predict_response
from wharf_protocol.errors import InvalidInput, Unsupported
from wharf_protocol.infer_types import InferRequest
from wharf_protocol.openai import Embedding, EmbeddingRequest, EmbeddingResponse, Usage

logger = logging.getLogger("wharf.huggingface")

# One request's texts: bounded so one call cannot hold the model for long.
MAX_TEXTS = 1024


def texts_of(payload: dict[str, Any] | InferRequest) -> list[str]:
    """The texts of a V1 body or a V2 request (its first input, BYTES)."""
    if isinstance(payload, InferRequest):
        if not payload.inputs:
            raise InvalidInput("the request has no inputs")
        values: Any = payload.inputs[0].as_numpy().reshape(-1).tolist()
    elif isinstance(payload, dict):
        values = payload.get("instances", payload.get("inputs"))
        if not isinstance(values, list):
            raise InvalidInput('expected "instances" (or "inputs"): a list of texts')
    else:
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInput("the input must be a non-empty list of texts")
    if len(texts) > MAX_TEXTS:
        raise InvalidInput(f"at most {MAX_TEXTS} texts per request, got {len(texts)}")
    return texts


class HuggingfaceEncoderModel(Model, OpenAIEncoderModel):
    def __init__(
        self,
        name: str,
        source: str,
        task: MLTask,
        dtype: str,
        max_model_len: int,
        *,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        do_lower_case: bool = True,
        add_special_tokens: bool = True,
        trust_remote_code: bool = False,
        return_probabilities: bool = False,
        return_raw_logits: bool = False,
        return_offsets_mapping: bool = False,
        log_requests: bool = True,
        max_log_len: int | None = None,
    ) -> None:
        super().__init__(name)
        self.source = source
        self.task = task
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.revision = revision
        self.tokenizer_revision = tokenizer_revision
        self.do_lower_case = do_lower_case
        self.add_special_tokens = add_special_tokens
        self.trust_remote_code = trust_remote_code
        self.return_probabilities = return_probabilities
        self.return_raw_logits = return_raw_logits
        self.return_offsets_mapping = return_offsets_mapping
        self.log_requests = log_requests
        self.max_log_len = max_log_len
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> bool:
        import transformers

        from wharf_model_server.runtimes.huggingface.weights import detect_placement, load_weights

        classes = {
            MLTask.sequence_classification: transformers.AutoModelForSequenceClassification,
            MLTask.token_classification: transformers.AutoModelForTokenClassification,
            MLTask.fill_mask: transformers.AutoModelForMaskedLM,
            MLTask.text_embedding: transformers.AutoModel,
        }
        if self.task not in classes:
            raise ValueError(f"task {self.task.value} is not an encoder task")
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.source,
            revision=self.tokenizer_revision,
            do_lower_case=self.do_lower_case,
            trust_remote_code=self.trust_remote_code,
        )
        cls = classes[self.task]
        self._model = load_weights(
            cls,
            self.source,
            dtype=self.dtype,
            placement=detect_placement(cls, self.source, self.trust_remote_code),
            revision=self.revision,
            trust_remote_code=self.trust_remote_code,
        )
        if self.return_offsets_mapping and not getattr(self._tokenizer, "is_fast", False):
            raise ValueError("--return_offsets_mapping needs a fast tokenizer")
        self.ready = True
        return self.ready

    # -- the pipeline: one sync call per request, in the server's thread pool ----------------

    def _encode(self, texts: list[str]) -> Any:
        return self._tokenizer(
            texts,
            max_length=self.max_model_len,
            add_special_tokens=self.add_special_tokens,
            padding=True,
            truncation=True,
            return_tensors="pt",
            return_offsets_mapping=self.return_offsets_mapping
            and self.task is MLTask.token_classification,
        )

    def _log(self, texts: list[str]) -> None:
        if self.log_requests:
            shown = [t[: self.max_log_len] for t in texts] if self.max_log_len else texts
            logger.info("model %s: %d text(s): %r", self.name, len(texts), shown)

    def run(self, texts: list[str]) -> tuple[list[Any], int, Any]:
        """Answers for `texts`, the number of real tokens, and the offsets (if asked)."""
        import torch

        encoded = self._encode(texts)
        offsets = encoded.pop("offset_mapping", None)
        mask = encoded["attention_mask"]
        tokens = int(mask.sum())
        # Inputs go where the model's first layers are; answers come back to the CPU in one
        # copy before they are read value by value.
        device = self._model.device
        inputs = {key: value.to(device) for key, value in encoded.items()}
        with torch.inference_mode():
            output = self._model(**inputs, return_dict=True)
            if self.task is MLTask.text_embedding:
                pooled = embeddings(output.last_hidden_state, inputs["attention_mask"])
                return pooled, tokens, offsets
            logits = output.logits.float().cpu()
        if self.task is MLTask.sequence_classification:
            return self._classes(logits), tokens, offsets
        if self.task is MLTask.token_classification:
            return [self._classes(row) for row in logits], tokens, offsets
        return self._fill_mask(logits, encoded["input_ids"]), tokens, offsets

    def _classes(self, logits: Any) -> list[Any]:
        import torch

        if self.return_raw_logits:
            return [{i: float(v) for i, v in enumerate(row)} for row in logits]
        if self.return_probabilities:
            probs = torch.softmax(logits, dim=-1)
            return [{i: round(float(v), 4) for i, v in enumerate(row)} for row in probs]
        return [int(i) for i in logits.argmax(dim=-1)]

    def _fill_mask(self, logits: Any, input_ids: Any) -> list[Any]:
        import torch

        mask_id = self._tokenizer.mask_token_id
        if mask_id is None:
            raise Unsupported(f"model {self.name!r}: the tokenizer has no mask token")
        answers: list[Any] = []
        for row, ids in zip(logits, input_ids, strict=True):
            positions = (ids == mask_id).nonzero().flatten().tolist()
            if not positions:
                raise InvalidInput(f"every text needs a {self._tokenizer.mask_token} token")
            masked = row[positions]
            if self.return_raw_logits:
                answers.append([[{j: float(v)} for j, v in enumerate(r)] for r in masked])
            elif self.return_probabilities:
                probs = torch.softmax(masked, dim=-1)
                answers.append([[{j: f"{float(v):.4f}"} for j, v in enumerate(r)] for r in probs])
            else:
                words = [self._tokenizer.decode([int(i)]) for i in masked.argmax(dim=-1)]
                answers.append(words[0] if len(words) == 1 else words)
        return answers

    def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        texts = texts_of(payload)
        self._log(texts)
        answers, _, offsets = self.run(texts)
        result = get_predict_response(payload, answers, self.name)
        if offsets is not None and isinstance(result, dict):
            result["offset_mapping"] = offsets.tolist()
        return result

    # -- OpenAI ------------------------------------------------------------------------------

    async def create_embedding(self, request: EmbeddingRequest) -> EmbeddingResponse:
        if self.task is not MLTask.text_embedding:
            raise Unsupported(
                f"model {self.name!r} serves {self.task.value}; embeddings need a "
                "text_embedding model (--task text_embedding)"
            )
        raw = request.input
        if isinstance(raw, str):
            texts = [raw]
        elif raw and all(isinstance(t, str) for t in raw):
            texts = [str(t) for t in raw]
        else:
            # Token ids are the client's tokenizer's (often tiktoken), not this model's.
            raise InvalidInput("input: give text; token ids are not accepted by this model")
        if len(texts) > MAX_TEXTS:
            raise InvalidInput(f"input: at most {MAX_TEXTS} texts, got {len(texts)}")
        if request.dimensions is not None:
            raise InvalidInput("dimensions: not supported by this model")
        self._log(texts)
        loop = asyncio.get_running_loop()
        vectors, tokens, _ = await loop.run_in_executor(executor.get(), self.run, texts)
        data = [
            Embedding(index=i, embedding=as_base64(v) if request.encoding_format == "base64" else v)
            for i, v in enumerate(vectors)
        ]
        return EmbeddingResponse(
            id=f"embd-{generate_uuid()}",
            created=int(time.time()),
            data=data,
            model=request.model or self.name,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )


def embeddings(hidden: Any, mask: Any) -> list[list[float]]:
    """Mean over the real tokens, L2-normalized (KServe's pooling for text_embedding)."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    normalized = torch.nn.functional.normalize(pooled.float(), p=2, dim=1).cpu()
    return [row.tolist() for row in normalized]


def as_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32, base64."""
    packed = np.asarray(vector, dtype="<f4").tobytes()
    return base64.b64encode(packed).decode("ascii")
