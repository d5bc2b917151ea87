"""Which version answers a request."""

from fastserve.routing.router import route

__all__ = ["route"]
