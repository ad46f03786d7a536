"""The Hugging Face runtime (KServe's huggingfaceserver, same flags): vLLM in-process for text
generation where vLLM supports the architecture, transformers otherwise and for the classic
tasks (sequence and token classification, fill-mask, embeddings).

torch, transformers and vllm are imported lazily, inside the functions that need them: the
decisions (`task`, `options`, `stops`) import none of them and run in any environment. The
runtime itself runs under the LLM engine environment's python (docs/huggingface.md).
"""
