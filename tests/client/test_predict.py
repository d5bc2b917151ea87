"""The client against the real server: its answers equal in-process onnxruntime on the bundled models, for arrays,
rows, records and columns, over msgpack and JSON, from the sync and the asyncio client."""

import asyncio

import numpy as np
import pytest

from fastserve.client import AsyncClient, Client, InvalidRequest
from tests.client.conftest import as_columns, assert_answer, churn_records, established_connections, reference

FORMATS = ["msgpack", "json"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_arrays(server, golden, fmt, dtype):
    x = golden["churn_mlp"]["inputs"]
    if dtype.startswith("int"):
        x = np.round(x * 10)
    with Client(server.url, format=fmt) as client:
        for model in ("churn", "churn_mlp", "spend"):
            assert_answer(client.predict(model, x.astype(dtype)), model, x)


def test_big_endian_and_strided_arrays_are_sent_as_their_values(server, golden):
    x = golden["churn_mlp"]["inputs"]
    with Client(server.url) as client:
        assert_answer(client.predict("churn_mlp", x.astype(">f4")), "churn_mlp", x)
        wide = np.repeat(x, 2, axis=1)[:, ::2]  # not contiguous
        assert_answer(client.predict("churn_mlp", wide), "churn_mlp", x)
        assert_answer(client.predict("churn_mlp", x[:1]), "churn_mlp", x[:1])


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows(server, golden, fmt):
    x = golden["spend"]["inputs"][:9]
    with Client(server.url, format=fmt) as client:
        assert_answer(client.predict("spend", x.tolist()), "spend", x)
        assert_answer(client.predict("spend", [tuple(row) for row in x.tolist()]), "spend", x)


@pytest.mark.parametrize("fmt", FORMATS)
def test_records_and_columns(server, fmt):
    records, x = churn_records()
    with Client(server.url, format=fmt) as client:
        assert_answer(client.predict_records("churn", records), "churn", x)
        assert_answer(client.predict_columns("churn", as_columns(records)), "churn", x)
        # numpy columns and scalars, as a DataFrame's columns give them
        columns = {k: np.asarray(v) if k in ("age", "country") else v for k, v in as_columns(records).items()}
        assert_answer(client.predict_columns("churn", columns), "churn", x)
        scalars = [{k: np.float32(v) if isinstance(v, float) else v for k, v in r.items()} for r in records]
        assert_answer(client.predict_records("churn", scalars), "churn", x)


@pytest.mark.parametrize("fmt", FORMATS)
def test_async_client_many_concurrent_calls_on_one_client(server, golden, fmt):
    """200 calls at once over one client with 8 connections: every one gets its own answer."""
    records, records_x = churn_records()
    x = golden["churn_mlp"]["inputs"]
    rng = np.random.default_rng(3)

    async def main():
        async with AsyncClient(server.url, format=fmt, max_connections=8) as client:
            calls, wanted = [], []
            for i in range(200):
                lo = int(rng.integers(0, 60))
                hi = lo + int(rng.integers(1, 5))
                if i % 4 == 0:
                    calls.append(client.predict("churn_mlp", x[lo:hi]))
                    wanted.append(("churn_mlp", x[lo:hi]))
                elif i % 4 == 1:
                    calls.append(client.predict("spend", x[lo:hi].tolist()))
                    wanted.append(("spend", x[lo:hi]))
                elif i % 4 == 2:
                    calls.append(client.predict_records("churn", records[lo:hi]))
                    wanted.append(("churn", records_x[lo:hi]))
                else:
                    calls.append(client.predict_columns("churn", as_columns(records[lo:hi])))
                    wanted.append(("churn", records_x[lo:hi]))
            answers = await asyncio.gather(*calls)
            assert await client.health() and await client.ready()
            return answers, wanted

    answers, wanted = asyncio.run(main())
    for answer, (model, inputs) in zip(answers, wanted, strict=True):
        assert_answer(answer, model, inputs, exact=False)


def test_pinned_version(versions_server, golden):
    x = golden["spend"]["inputs"][:5]
    with Client(versions_server.url) as client:
        primary = client.predict("m", x)
        assert primary.version == 2 and set(primary.outputs) == {"label", "probabilities"}
        one = client.predict("m", x, version=1)
        assert one.version == 1 and set(one.outputs) == {"prediction"}
        np.testing.assert_array_equal(one["prediction"].astype(np.float32), reference("spend", x)["prediction"])
        two = client.predict("m", x, version=2)
        np.testing.assert_array_equal(two["probabilities"].astype(np.float32),
                                      reference("churn_mlp", x)["probabilities"])
        with pytest.raises(InvalidRequest) as caught:
            client.predict("m", x, version=7)
        assert caught.value.status == 404 and caught.value.code == "version_not_found"
        status = client.model_status("m")
        assert status["primary"] == 2 and [v["version"] for v in status["versions"]] == [1, 2]
        assert [m["name"] for m in client.list_models()] == ["m"]
        drift = client.drift("m")
        assert drift["model"] == "m" and [v["version"] for v in drift["versions"]] == [1, 2]


def test_one_keep_alive_connection_serves_sequential_calls(versions_server, golden):
    x = golden["spend"]["inputs"][:3]
    assert established_connections(versions_server.port) == 0
    with Client(versions_server.url) as client:
        for _ in range(20):
            client.predict("m", x)
            client.model_status("m")
        assert established_connections(versions_server.port) == 1
    assert established_connections(versions_server.port) == 0

    async def burst():
        async with AsyncClient(versions_server.url, max_connections=3) as client:
            await asyncio.gather(*(client.predict("m", x) for _ in range(60)))
            return established_connections(versions_server.port)

    assert 1 <= asyncio.run(burst()) <= 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_for_answers_by_their_request_ids_from_both_clients(server, golden, fmt):
    """The session server is shared: fresh ids of this test's own answers, so the counts are its own."""
    x = golden["spend"]["inputs"][:4]
    with Client(server.url, format=fmt) as client:
        one = client.predict("spend", x[:1])
        four = client.predict("spend", x, headers={"X-Request-Id": f"client-test-{fmt}"})
        assert len(one.request_id) == 16 and four.request_id == f"client-test-{fmt}"
        answer = client.feedback("spend", [one.request_id, f"{four.request_id}:3", "never-made"],
                                 np.array([10.0, 20.0, 30.0]))
        assert (answer["joined"], answer["unknown"]) == (2, 1)
        assert client.quality("spend")["versions"][0]["quality"]["since_load"]["rows"] >= 2
        with pytest.raises(ValueError, match="one label per id"):
            client.feedback("spend", ["a"], [1.0, 2.0])

    async def calls() -> dict:
        async with AsyncClient(server.url, format=fmt) as client:
            made = await client.predict("spend", x[:1])
            return await client.feedback("spend", [made.request_id, made.request_id], [1.0, 2.0])
    answer = asyncio.run(calls())
    assert (answer["joined"], answer["repeated"]) == (1, 1)
