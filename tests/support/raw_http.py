"""A tiny raw HTTP server on 127.0.0.1 for the misbehaviours the scripted server has no knob for.

``RawServer("trickle")`` answers every request with ``200`` headers and then one body byte
every ``interval`` seconds, forever (an HTTP read timeout restarts on every byte, so only a
total deadline ends such a request); ``"silent"`` reads the request and never answers;
``"body"`` answers ``200`` with the given raw ``body`` bytes (a body that is not JSON, say).
It runs its own event loop on a thread and counts the requests it saw, so a test can tell
how many attempts a client made without timing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

Behaviour = Literal["trickle", "silent", "body"]


class RawServer:
    def __init__(
        self, behaviour: Behaviour, *, interval: float = 0.1, body: bytes = b"not json"
    ) -> None:
        self.behaviour = behaviour
        self.interval = interval
        self.body = body
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="raw-http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:  # connections still open: a trickle or silence in progress
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled at shutdown: end quietly (a cancelled handler task makes asyncio log).
        with contextlib.suppress(
            ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError
        ):
            while True:  # keep-alive: a client may retry on the same connection
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                if self.behaviour == "silent":
                    await asyncio.sleep(3600)
                elif self.behaviour == "trickle":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: 1000000\r\n\r\n"
                    )
                    while True:
                        writer.write(b" ")
                        await writer.drain()
                        await asyncio.sleep(self.interval)
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + f"content-length: {len(self.body)}\r\n\r\n".encode()
                        + self.body
                    )
                    await writer.drain()
        writer.close()
