"""The router: KServe's InferenceGraph data plane and Wharf's OpenAI LLM gateway."""
