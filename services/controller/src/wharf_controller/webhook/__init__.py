"""Admission and conversion webhooks, served by `wharf-controller run` over TLS.

`admission` and `conversion_review` are pure (a review in, a response out); `server` is the thin
aiohttp adapter with the TLS context that reloads its certificate when the files change.
"""
