"""The InferenceGraph router: KServe's router interface and semantics (`cmd/router`).

`spec` loads and checks the graph, `decisions` are the pure rules (which step, which split,
conditions, merges), `engine` walks the graph over a `Caller`, `client` is the HTTP caller,
`app` the ASGI surface and `cli` the command line.
"""
