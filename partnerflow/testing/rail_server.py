"""Shared plumbing for the fake payout providers (Stripe, PayPal).

`ServedApp` (partnerflow.testing.local_server.LocalServer) runs an ASGI app on 127.0.0.1:<free port> in a daemon thread. `FaultPlan` holds the
faults a test injects into the next matching requests:

- `status(429, retry_after=2)` / `status(503)`: answered at the edge, BEFORE the request takes effect
  (like a gateway or rate limiter), so nothing is stored and the same request may be retried;
- `stall(seconds, after_effect=True)`: the provider performs the request (creates the transfer),
  then holds the answer longer than the client's timeout: the ambiguous "accepted, then timed out"
  case. With after_effect=False it stalls, then fails (504/503) without having done anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from partnerflow.testing.local_server import LocalServer as ServedApp  # noqa: F401  (one threaded-server helper for every fake)


@dataclass
class Fault:
    kind: str  # "status" | "stall"
    path: str
    status: int = 0
    retry_after: int | None = None
    seconds: float = 0.0
    after_effect: bool = False


@dataclass
class FaultPlan:
    _queue: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, status: int, *, times: int = 1, retry_after: int | None = None, path: str = "") -> None:
        with self._lock:
            self._queue.extend(Fault("status", path, status=status, retry_after=retry_after) for _ in range(times))

    def stall(self, seconds: float, *, after_effect: bool, times: int = 1, path: str = "") -> None:
        with self._lock:
            self._queue.extend(
                Fault("stall", path, seconds=seconds, after_effect=after_effect) for _ in range(times))

    def take(self, method: str, path: str) -> Fault | None:
        """The next fault for a write request (POST) to `path`, if any. Reads are never faulted."""
        if method != "POST":
            return None
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.path in path:
                    return self._queue.pop(i)
        return None
