"""The OpenAI LLM gateway: routes each request to an engine pod by load, prefix cache and
session, with the prefill/decode hand-off. See docs/router.md (LLM gateway)."""
