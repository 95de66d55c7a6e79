"""A small HTTP/1.1 server on 127.0.0.1 in a thread of its own, for the fakes of outside APIs.

Hand-written on asyncio streams rather than an ASGI framework because a fake must misbehave
exactly: send part of a chunked body and drop the connection (the client then sees an
incomplete body, as when a provider dies mid-answer), or hold the first byte back. Every
response is `Connection: close`, so no request ever waits on a pooled connection.

Its own event loop in its own thread: a test (or a bench script, sync or async) keeps its loop,
and the fake's waits and pacing never block the client under test.
"""

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

# JSON as the wire carries it; the fakes read what clients send without a schema on purpose.
JsonObject = dict[str, Any]

MAX_BODY = 64 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def json(self) -> JsonObject:
        parsed = json.loads(self.body or b"{}")
        if not isinstance(parsed, dict):
            raise ValueError("the body is not a JSON object")
        return parsed


class Response:
    """What a handler writes: a whole JSON body, or a chunked stream it may break off."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._streaming = False

    async def send_json(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        head = {"content-type": "application/json", "content-length": str(len(payload)), **(headers or {})}
        self._writer.write(self._head(status, head) + payload)
        await self._writer.drain()

    async def start_stream(self, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        head = {"content-type": content_type, "cache-control": "no-cache", "transfer-encoding": "chunked"}
        self._writer.write(self._head(200, {**head, **(headers or {})}))
        await self._writer.drain()
        self._streaming = True

    async def send_chunk(self, data: bytes) -> None:
        self._writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await self._writer.drain()

    async def end_stream(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    def drop(self) -> None:
        """Close the connection mid-body: the client sees an incomplete chunked read."""
        self._writer.transport.abort()

    @staticmethod
    def _head(status: int, headers: Mapping[str, str]) -> bytes:
        phrase = HTTPStatus(status).phrase if status in {s.value for s in HTTPStatus} else "Overloaded"
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{name}: {value}" for name, value in {**headers, "connection": "close"}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Handler = Callable[[Request, Response], Awaitable[None]]


class FakeHttpServer:
    """Start with `with server:` (or `start()` / `stop()`); `base_url` is known once started."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self.port = 0

    async def handle(self, request: Request, response: Response) -> None:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._stopped.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        response = Response(writer)
        try:
            request = await _read_request(reader)
            if request is not None:
                await self.handle(request, response)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away, as clients do
        except Exception:
            # A bug in the fake, not a scripted failure: say so loudly, in the test's output.
            log.exception("%s failed on a request", type(self).__name__)
            raise
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    if not request_line:
        return None
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0")), MAX_BODY)
    body = await reader.readexactly(length) if length else b""
    return Request(method=method, path=target.split("?", 1)[0], headers=headers, body=body)
