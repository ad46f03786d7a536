"""A simulated vLLM pod: vLLM's OpenAI API and `/metrics` over a calibrated cost model.

Many of them on loopback stand in for a GPU fleet, so that the LLM gateway can be tested and
measured at cluster scale on one machine. `docs/enginesim.md` describes the model and its
calibration; `wharf-engine-sim --help` the command.

Modules: `tokens` (the tokenizer stand-in, chat rendering, block hashes, the output text),
`costmodel` (how long an engine step takes), `prefix_cache` (a bounded LRU of block hashes),
`engine` (continuous batching with a waiting queue, in simulated time), `metrics` (vLLM's
Prometheus names), `api` (the HTTP surface), `cli` (one process, one or N pods), `fleet`
(starting simulator processes from tests and benchmarks).
"""
