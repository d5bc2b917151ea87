"""SIGTERM with requests in flight: every request the server has taken in hand is answered (even one whose body
is still arriving), new connections are refused at once, and the process exits with status 0."""

import asyncio
import signal
import socket
import time

import httpx
import msgpack
import numpy as np
import onnxruntime as ort

from tests.conftest import MODELS, copy_model, start_server

ROWS = 1000
REQUESTS = 16


async def _send_all_but_the_last_byte(port: int, bodies: list[bytes],
                                      ) -> tuple[list[asyncio.StreamReader], list[asyncio.StreamWriter]]:
    readers, writers = [], []
    for body in bodies:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/models/churn_mlp/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:-1]))
        await writer.drain()
        readers.append(reader)
        writers.append(writer)
    return readers, writers


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
    return int(lines[0].split()[1]), msgpack.unpackb(await reader.readexactly(length))


def test_sigterm_answers_accepted_requests_refuses_new_ones_and_exits_0(tmp_path):
    copy_model("churn_mlp", tmp_path, config="[batching]\nmax_queue_rows = 65536\n")
    srv = start_server(tmp_path, "--shutdown-grace", "30")
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(ROWS, 22)).astype(np.float32) for _ in range(REQUESTS)]
    bodies = [msgpack.packb({"inputs": {"dtype": "float32", "shape": list(x.shape), "data": x.tobytes()}})
              for x in xs]

    async def scenario():
        # Every request is accepted and its handler is reading the body when the signal comes: none can have been
        # answered before it, since each body's last byte is sent only after the signal.
        readers, writers = await _send_all_but_the_last_byte(srv.port, bodies)
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                metrics = (await client.get(f"{srv.url}/metrics")).text
                if f"fastserve_requests_in_flight {REQUESTS}.0" in metrics:
                    break
                await asyncio.sleep(0.005)
            else:
                raise AssertionError(f"the server did not take the {REQUESTS} requests in hand")
        srv.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.05)
        for writer, body in zip(writers, bodies, strict=True):
            writer.write(body[-1:])
        refused_after = None
        while time.monotonic() - signalled < 3:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=0.2).close()
            except OSError:
                refused_after = time.monotonic() - signalled
                break
            await asyncio.sleep(0.02)
        answers = await asyncio.gather(*(_answer(r) for r in readers))
        for writer in writers:
            writer.close()
        return refused_after, answers

    try:
        refused_after, answers = asyncio.run(scenario())
        code = srv.proc.wait(30)
    finally:
        log = srv.stop()
    assert refused_after is not None and refused_after < 1.0, refused_after
    session = ort.InferenceSession(str(MODELS / "churn_mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for x, (status, body) in zip(xs, answers, strict=True):
        assert status == 200, body
        expected = session.run(["probabilities"], {session.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(np.array(body["outputs"]["probabilities"], dtype=np.float32), expected, atol=1e-5)
    assert code == 0, log
    assert "shutting down: readiness is false" in log
