"""The data path: HTTP and gRPC reverse proxies in front of model servers.

`HttpProxy` (ASGI) and `GrpcRouter` forward requests to upstream replicas over pooled
connections (`upstream`); which replica serves a request is the `Backends`' decision
(`backends`). The pure parts (`balancer`, `retry`) do no I/O. See docs/datapath.md.
"""

from wharf_datapath.backends import Backends, Lease, Route, Unavailable

__all__ = ["Backends", "Lease", "Route", "Unavailable"]
