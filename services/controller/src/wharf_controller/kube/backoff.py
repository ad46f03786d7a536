"""Exponential backoff with jitter, for watches and requeues."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)
