"""What the abuse tests share: the message limit, the service name, the hypothesis profile."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LIMIT = 1024 * 1024
# seconds a request head may take (WHARF_HTTP_HEAD_TIMEOUT); short, so slow heads are seen cut
HEAD_TIMEOUT_S = 5
SERVICE = "iris"

# Bounded so the whole suite stays within a few minutes on two busy cores; raise it with
# WHARF_ABUSE_EXAMPLES for a longer hunt.
settings.register_profile(
    "abuse",
    max_examples=int(os.environ.get("WHARF_ABUSE_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
ABUSE = settings.get_profile("abuse")
