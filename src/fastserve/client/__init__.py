"""fastserve's Python client: `Client` (blocking) and `AsyncClient` (asyncio) over pooled keep-alive connections,
msgpack by default, numpy in and out, deadlines sent to the server, retries with backoff on 429 and 503.

    from fastserve.client import Client

    with Client("http://127.0.0.1:8000") as client:
        answer = client.predict("churn_mlp", x)        # x: a 2-D numpy array
        answer["probabilities"], answer.version
"""

try:
    import httpx  # noqa: F401
except ImportError as exc:
    raise ImportError('fastserve.client needs httpx, which the server does not: pip install "fastserve[client]"'
                      ) from exc

from fastserve.client.aio import AsyncClient
from fastserve.client.base import USE_CLIENT_DEFAULT
from fastserve.client.exceptions import (
    ConnectionFailed,
    DeadlineExceeded,
    FastserveClientError,
    InvalidRequest,
    Overloaded,
    ServerError,
)
from fastserve.client.retry import RetryPolicy
from fastserve.client.sync import Client
from fastserve.client.wire import Prediction

__all__ = [
    "USE_CLIENT_DEFAULT",
    "AsyncClient",
    "Client",
    "ConnectionFailed",
    "DeadlineExceeded",
    "FastserveClientError",
    "InvalidRequest",
    "Overloaded",
    "Prediction",
    "RetryPolicy",
    "ServerError",
]
