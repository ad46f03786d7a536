"""LLM workers: a vLLM engine per role, with what the platform adds around it."""
