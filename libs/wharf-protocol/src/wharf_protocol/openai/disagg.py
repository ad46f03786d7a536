"""The prefill/decode hand-off on the wire, as vLLM's disaggregated-serving proxy and llm-d's
sidecar do it, for completions and chat completions alike.

1. `prefill_body(request)`: the client's request for the prefill engine: one token
   (`max_tokens` and `max_completion_tokens` set to 1 where the request has them, `max_tokens`
   always), not streamed, no `stream_options`, and `kv_transfer_params` asking for a remote
   decode.
2. The prefill engine answers with `kv_transfer_params` (where its KV blocks are).
3. `decode_body(request, params)`: the client's request unchanged, plus those params, for the
   decode engine, whose answer (streamed or not) goes back to the client.
"""

from __future__ import annotations

from typing import Any

from wharf_protocol.openai.common import KVTransferParams


def prefill_body(request: dict[str, Any]) -> dict[str, Any]:
    """The request for the prefill engine; `request` is left as it is."""
    body = {k: v for k, v in request.items() if k != "stream_options"}
    body["stream"] = False
    body["max_tokens"] = 1
    if "max_completion_tokens" in body:
        body["max_completion_tokens"] = 1
    body["kv_transfer_params"] = KVTransferParams.for_prefill().wire()
    return body


def decode_body(
    request: dict[str, Any], params: KVTransferParams | dict[str, Any] | None
) -> dict[str, Any]:
    """The request for the decode engine: the client's, with the prefill's `kv_transfer_params`
    (without them, when prefill failed, the decode engine computes the prompt itself)."""
    body = {k: v for k, v in request.items() if k != "kv_transfer_params"}
    if params is not None:
        body["kv_transfer_params"] = (
            params.wire() if isinstance(params, KVTransferParams) else dict(params)
        )
    return body
