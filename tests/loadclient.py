"""A lean asyncio HTTP/1.1 client for firing many requests at the real server from tests.

httpx's async client spends milliseconds of CPU per request, which on a two-core machine starves the server it is
testing and makes load tests slow and timing-sensitive. This one keeps a fixed set of keep-alive connections, sends
one request at a time on each, and reads answers by Content-Length, which is all the server ever sends.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split(" ", 2)[1]), headers, body)


async def post_many(port: int, path: str, bodies: list[bytes], connections: int,
                    headers: dict[str, str] | None = None, sent: asyncio.Event | None = None) -> list[Answer]:
    """POST every body to `path`, `connections` at a time, and return the answers in the order of the bodies.
    `sent` is set once every connection's first request is handed whole to the kernel."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    answers: list[Answer | None] = [None] * len(bodies)
    todo = iter(range(len(bodies)))
    unsent = [min(connections, len(bodies))]

    async def worker() -> None:
        reader = writer = None
        first = sent is not None
        try:
            for i in todo:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {len(bodies[i])}\r\n\r\n"
                if first:
                    writer.transport.set_write_buffer_limits(0)  # drain() then waits until the kernel has it all
                writer.write(head.encode("latin-1") + bodies[i])
                if first:
                    first = False
                    await writer.drain()
                    unsent[0] -= 1
                    if not unsent[0]:
                        sent.set()  # type: ignore[union-attr]
                answers[i] = answer = await _read_answer(reader)  # type: ignore[arg-type]
                if answer.headers.get("connection", "").lower() == "close":
                    writer.close()
                    await writer.wait_closed()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(connections)))
    missing = [i for i, a in enumerate(answers) if a is None]
    assert not missing, f"{len(missing)} requests got no answer"
    return answers  # type: ignore[return-value]


async def post_until(port: int, path: str, body: bytes, connections: int, stop: Callable[[], bool],
                     headers: dict[str, str] | None = None) -> list[Answer | BaseException]:
    """POST `body` on `connections` keep-alive connections, back to back, until `stop()` is true. Returns every
    answer, and the exception of any request that got none (a failure the caller counts)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
    results: list[Answer | BaseException] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not stop():
                writer.write(head + body)
                try:
                    answer = await _read_answer(reader)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    results.append(exc)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                results.append(answer)
                await asyncio.sleep(0)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return results
