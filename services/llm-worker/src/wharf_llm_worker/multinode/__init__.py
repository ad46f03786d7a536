"""Multi-node LLM engines on Ray: the leader places one rank per node and supervises the group.

Pure decisions: spec (the group), ranks (each node's engine command), placement (bundles, which
nodes are there), restart (when to restart the group), rayargs and settings (commands and flags).
Adapters: raynode (`ray start`), rankproc (the Ray actor running a rank), supervisor (the loop),
cli (`wharf-llm-worker multinode`), vllm_cli (vLLM's CLI for the CPU build).
"""
