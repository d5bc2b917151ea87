"""HTTP: the ASGI application (app.py), codecs and the mapping of errors to status codes."""
