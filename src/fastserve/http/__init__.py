"""HTTP: the ASGI application, codecs and the mapping of errors to status codes."""

from fastserve.http.app import create_app

__all__ = ["create_app"]
