"""Exponential backoff with full jitter, for reconnects and adapter restarts.

Jitter matters more than the exponent: after a network blip a fleet of bots must not reconnect
in lockstep. The delay resets once the guarded thing has stayed healthy for ``reset_after``
seconds, so one crash a day does not slowly push restarts towards the cap.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class ExponentialBackoff:
    """``delay()`` returns how long to wait before the next attempt.

    The n-th consecutive failure waits a uniform random time in ``[0, min(cap, base * 2**n)]``
    (at least ``floor``), "full jitter" in the AWS architecture blog's terms.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        *,
        floor: float = 0.05,
        reset_after: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.floor = min(floor, base)
        self.reset_after = cap * 2 if reset_after is None else reset_after
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._failures = 0
        self._last: float | None = None

    @property
    def failures(self) -> int:
        return self._failures

    def ceiling(self) -> float:
        """The largest delay the next call to :meth:`delay` may return."""
        return min(self.cap, self.base * 2.0 ** min(self._failures, 62))

    def delay(self) -> float:
        now = self._clock()
        if self._last is not None and now - self._last > self.reset_after:
            self._failures = 0
        self._last = now
        ceiling = self.ceiling()
        self._failures += 1
        return max(self.floor, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self._failures = 0
        self._last = None
