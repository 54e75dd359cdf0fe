"""Faults a test injects into a fake provider's next matching requests: one mechanism for every fake.

    fake.faults.fail_next(429, retry_after=3)              # refused at the edge: nothing is done
    fake.faults.fail_next(503, times=4, path_contains="/send")
    fake.faults.delay_next(0.5)                            # slow: answered late, the request still goes through
    fake.faults.stall_next(4, after_effect=True)           # done, but the answer comes after the client gave up
    fake.faults.stall_next(4, after_effect=False)          # held, then 504 without having done anything
    fake.faults.drop_next()                                # done, then the connection is cut mid-answer

A fault applies to the next request whose method and path match it; each fake says which requests its
faults aim at when the test does not (the payout rails: their writes only, never the status reads).
`play` is what the fake's server does with the fault it took; the answer to a refused request is the
vendor's own error shape (`error_response`, given by each fake).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

# ASGI: app(scope, receive, send)
Asgi = Callable[[dict, Callable, Callable], Awaitable[None]]


class FaultKind(StrEnum):
    FAIL = "fail"  # an error status before the request takes effect
    DELAY = "delay"  # the request takes effect after a pause
    STALL = "stall"  # the answer is held past the client's timeout
    DROP = "drop"  # the request takes effect, the answer never arrives whole


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    method: str | None = None  # None: any method
    path_contains: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: dict | None = None  # None: the fake's own error body for `status`
    seconds: float = 0.0
    after_effect: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path_contains in path


class Faults:
    """The queue of faults of one fake. `method` / `path_contains`: what a fault aims at by default."""

    def __init__(self, *, method: str | None = None, path_contains: str = ""):
        self._default = {"method": method, "path_contains": path_contains}
        self._queue: list[Fault] = []
        self._lock = threading.Lock()  # tests add faults from their thread while the server takes them

    def _add(self, times: int, kind: FaultKind, path_contains: str | None, method: str | None, **details) -> None:
        aim = {"method": method or self._default["method"],
               "path_contains": self._default["path_contains"] if path_contains is None else path_contains}
        with self._lock:
            self._queue.extend(Fault(kind, **aim, **details) for _ in range(times))

    def fail_next(self, status: int, *, times: int = 1, retry_after: int | None = None,
                  headers: dict | None = None, body: dict | None = None, path_contains: str | None = None,
                  method: str | None = None) -> None:
        """Answer `status` (with `headers`, Retry-After) before the request takes effect."""
        headers = {name: str(value) for name, value in (headers or {}).items()}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self._add(times, FaultKind.FAIL, path_contains, method, status=status, headers=headers, body=body)

    def delay_next(self, seconds: float, *, times: int = 1, path_contains: str | None = None,
                   method: str | None = None) -> None:
        """Hold the request `seconds`, then let it through (a slow provider; the call stays in flight)."""
        self._add(times, FaultKind.DELAY, path_contains, method, seconds=seconds)

    def stall_next(self, seconds: float, *, after_effect: bool, times: int = 1, path_contains: str | None = None,
                   method: str | None = None) -> None:
        """Hold the answer `seconds`: after the request took effect, or before it and then answer 504."""
        self._add(times, FaultKind.STALL, path_contains, method, seconds=seconds, after_effect=after_effect)

    def drop_next(self, *, times: int = 1, path_contains: str | None = None, method: str | None = None) -> None:
        """Let the request take effect, then cut the connection before the answer is complete."""
        self._add(times, FaultKind.DROP, path_contains, method, after_effect=True)

    def take(self, method: str, path: str) -> Fault | None:
        """The next fault for this request, removed from the queue; None when none matches."""
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.matches(method, path):
                    return self._queue.pop(i)
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)


async def play(fault: Fault, app: Asgi, error_response: Callable[[int, dict | None, dict], Asgi],
               scope: dict, receive: Callable, send: Callable) -> None:
    """Serve one request under `fault`; `error_response(status, body, headers)` is the vendor's error answer."""
    if fault.kind is FaultKind.FAIL:
        return await error_response(fault.status, fault.body, fault.headers)(scope, receive, send)
    if fault.kind is FaultKind.STALL and not fault.after_effect:
        await asyncio.sleep(fault.seconds)  # hangs, then gives up without doing anything
        return await error_response(504, None, {})(scope, receive, send)
    if fault.kind is FaultKind.DELAY:
        await asyncio.sleep(fault.seconds)
        return await app(scope, receive, send)

    cut = False

    async def late_or_cut(message: dict) -> None:
        nonlocal cut
        if cut:
            return  # the rest of the answer never leaves
        if message["type"] == "http.response.start" and fault.kind is FaultKind.DROP:
            # Announce more body than will come; the server closes the connection when the app returns.
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
            message = {**message, "headers": [*headers, (b"content-length", b"1000000")]}
            cut = True
        elif message["type"] == "http.response.start":
            await asyncio.sleep(fault.seconds)  # done, but the client gives up before it hears so
        await send(message)

    await app(scope, receive, late_or_cut)
