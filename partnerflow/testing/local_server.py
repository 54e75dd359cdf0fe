"""Run a small ASGI app (a fake SaaS API) on 127.0.0.1:<free port> in a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class LocalServer:
    def __init__(self, app):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> LocalServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()


class Faults:
    """Faults injected into the next matching requests: an error status, or a stall (timeout).

    `stall_after=True` stalls after the request took effect (the ambiguous case: created, but the
    client timed out before seeing the answer).
    """

    def __init__(self):
        self._queue: list[dict] = []
        self._lock = threading.Lock()

    def fail_next(self, status: int, *, times: int = 1, headers: dict | None = None, body: dict | None = None,
                  path_contains: str = "") -> None:
        with self._lock:
            for _ in range(times):
                self._queue.append({"kind": "status", "status": status, "headers": headers or {},
                                    "body": body, "path": path_contains})

    def stall_next(self, seconds: float, *, after_effect: bool = False, path_contains: str = "") -> None:
        with self._lock:
            self._queue.append({"kind": "stall", "seconds": seconds, "after": after_effect, "path": path_contains})

    def take(self, path: str) -> dict | None:
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault["path"] in path:
                    return self._queue.pop(i)
        return None


class FakeProvider:
    """What every fake SaaS API shares: its app served on a free port, the calls it received, its faults.

    Subclasses set `self.app` (via `_build()`) in their __init__ after calling super().__init__().
    """

    def __init__(self):
        self.received: list[tuple[str, str]] = []  # (method, path) of every call
        self.faults = Faults()
        self._server: LocalServer | None = None

    def start(self):
        self._server = LocalServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    @property
    def url(self) -> str:
        return self._server.url

    def calls(self, method: str, path_part: str) -> int:
        """How many `method` requests had `path_part` in their path."""
        return sum(1 for m, p in self.received if m == method and path_part in p)
