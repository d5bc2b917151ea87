# cython: language_level=3
"""A one-row echo as a connection protocol of our own, compiled, on uvloop: httptools (llhttp) parses, and the answer
is written from `on_message_complete` straight to the transport, with no ASGI scope, Task or Future per request.
The third of the transports compared by `bench_echo` (with uvicorn's ASGI and granian's RSGI)."""

import time

import httptools

cdef bytes _date = b""
cdef double _date_at = 0.0


cdef bytes date_header():
    # one formatted Date a second, as uvicorn and granian do
    global _date, _date_at
    cdef double now = time.time()
    if now - _date_at >= 1.0:
        _date_at = now
        _date = b"date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode() + b"\r\n"
    return _date


cdef class EchoProtocol:
    cdef object transport
    cdef object parser
    cdef list parts
    cdef bytes content_type

    def __cinit__(self):
        self.parser = httptools.HttpRequestParser(self)
        self.parts = []
        self.content_type = b"application/json"

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def eof_received(self):
        return False

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def data_received(self, bytes data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()

    def on_message_begin(self):
        self.parts = []
        self.content_type = b"application/json"

    def on_header(self, bytes name, bytes value):
        if len(name) == 12 and name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, bytes body):
        self.parts.append(body)

    def on_message_complete(self):
        cdef bytes body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        if self.transport is None:
            return
        self.transport.write(b"HTTP/1.1 200 OK\r\n" + date_header() + b"content-type: " + self.content_type
                             + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        if not self.parser.should_keep_alive():
            self.transport.close()


def serve(str host, int port):
    import asyncio

    import uvloop

    async def main():
        server = await asyncio.get_running_loop().create_server(EchoProtocol, host, port, backlog=2048)
        async with server:
            await server.serve_forever()

    uvloop.run(main())
