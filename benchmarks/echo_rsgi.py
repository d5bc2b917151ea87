"""The one-row echo on granian's RSGI interface: `granian --interface rsgi benchmarks.echo_rsgi:app`."""

from typing import Any


async def app(scope: Any, protocol: Any) -> None:
    content_type = scope.headers.get("content-type", "application/json")
    body = await protocol()
    protocol.response_bytes(200, [("content-type", content_type)], body)
