"""What every fake SaaS API shares: served on 127.0.0.1:<free port>, the calls it received, its faults."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from partnerflow.testing.faults import Faults, play


class LocalServer:
    """Run an ASGI app on 127.0.0.1:<free port> in a daemon thread; the port is known before it starts."""

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


class FakeProvider:
    """The base of every fake: `start()`/`stop()` or `with`, `url`, `received` calls, `faults`.

    A subclass sets `self.app` (its routes) after calling super().__init__(), and may give:
    - `refuse(request)`: the answer to a request refused before anything else (authentication);
    - `error_body(status)`: the vendor's error body for an injected status;
    - `fault_method` / `fault_path`: the requests its faults aim at when a test does not say.
    Every request passes here first: it is recorded, maybe refused, then served under the next fault.
    """

    fault_method: str | None = None
    fault_path: str = ""

    def __init__(self):
        self.received: list[tuple[str, str]] = []  # (method, path) of every call
        self.faults = Faults(method=self.fault_method, path_contains=self.fault_path)
        self.app = None
        self._server = LocalServer(self)

    def start(self):
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    def calls(self, method: str, path_part: str = "") -> int:
        """How many `method` requests had `path_part` in their path."""
        return sum(1 for m, p in self.received if m == method and path_part in p)

    def refuse(self, request: Request) -> Response | None:
        return None

    def error_body(self, status: int) -> dict:
        return {"message": f"injected {status}"}

    def error_response(self, status: int, body: dict | None, headers: dict) -> Response:
        return JSONResponse(self.error_body(status) if body is None else body, status_code=status, headers=headers)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)  # headers only: the body stays unread for the app
        self.received.append((request.method, request.url.path))
        refusal = self.refuse(request)
        if refusal is not None:
            return await refusal(scope, receive, send)
        fault = self.faults.take(request.method, request.url.path)
        if fault is None:
            return await self.app(scope, receive, send)
        await play(fault, self.app, self.error_response, scope, receive, send)
