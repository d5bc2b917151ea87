"""`POST /v1/models/{name}/feedback` (labels for earlier answers, by request id) and `GET /v1/models/{name}/quality`
(what the labels say of each version)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fastserve.exceptions import InvalidInput
from fastserve.http.codecs import CONTENT_TYPE_HEADER, JSON, decode, encode, request_format, response_format
from fastserve.http.serving import MAX_REQUEST_ID, read_body
from fastserve.registry.feedback import check_labels, feedback_answer, score_labels, take_labels
from fastserve.registry.operations import quality_report
from fastserve.routing.routes import routes_of

MAX_ID = MAX_REQUEST_ID + 12  # a request id with its `:row`


def _fail(message: str, path: str) -> InvalidInput:
    return InvalidInput(f"{message} - at `{path}`", detail={"path": path})


def parse_feedback(body: Any) -> tuple[list[str], list[Any]]:
    """`{"ids": [...], "labels": [...]}` or `{"records": [{"id": ..., "label": ...}, ...]}` into (ids, labels);
    refused with the path of the first thing wrong."""
    if type(body) is not dict:
        raise _fail("the body must be an object with `ids` and `labels`, or `records`", "$")
    unknown = sorted(str(k) for k in body if k not in ("ids", "labels", "records"))
    if unknown:
        raise _fail(f"unknown field `{unknown[0]}`; expected `ids` and `labels`, or `records`", "$")
    if "records" in body:
        if "ids" in body or "labels" in body:
            raise _fail("give `records`, or `ids` and `labels`, not both", "$")
        records = body["records"]
        if type(records) is not list:
            raise _fail("expected a list of {\"id\", \"label\"} objects", "$.records")
        ids: list[Any] = []
        labels: list[Any] = []
        for i, record in enumerate(records):
            if type(record) is not dict or "id" not in record or "label" not in record or len(record) != 2:
                raise _fail("expected an object with exactly `id` and `label`", f"$.records[{i}]")
            ids.append(record["id"])
            labels.append(record["label"])
        where = ("$.records[{}].id", "$.records[{}].label")
    else:
        for key in ("ids", "labels"):
            if type(body.get(key)) is not list:
                value = body.get(key)
                raise _fail(f"expected a list, got {type(value).__name__ if value is not None else 'nothing'}",
                            f"$.{key}")
        ids, labels = body["ids"], body["labels"]
        if len(ids) != len(labels):
            raise _fail(f"{len(ids)} ids but {len(labels)} labels; give one label per id", "$.labels")
        where = ("$.ids[{}]", "$.labels[{}]")
    if not ids:
        raise _fail("no labels given", "$")
    for i, key in enumerate(ids):
        if type(key) is not str or not 0 < len(key) <= MAX_ID:
            raise _fail(f"expected a request id (a string of 1 to {MAX_ID} characters), got {key!r:.60}",
                        where[0].format(i))
    for i, label in enumerate(labels):
        if type(label) not in (int, float, str):
            raise _fail(f"expected a label (a number or a string), got {label!r:.60}", where[1].format(i))
    return ids, labels


async def feedback(request: Request) -> Response:
    app, name = request.app.state.fastserve, request.path_params["name"]
    declared = request.headers.get("content-length")
    raw = await read_body(request.receive, None if declared is None else declared.encode("latin-1"),
                          app.config.max_body_bytes)
    content_type = request.headers.get("content-type")
    fmt_in = request_format(content_type.encode("latin-1") if content_type is not None else None)
    accept = request.headers.get("accept")
    fmt = response_format(accept.encode("latin-1") if accept is not None else None, fmt_in)
    ids, labels = parse_feedback(decode(raw, fmt_in))
    model = app.registry.model(name)  # (404 for a model the server does not have)
    check_labels(model, labels)
    if app.control is not None:  # worker processes: every worker's store, scored in the supervisor
        answer = await app.control.feedback(name, ids, labels)
    else:
        outcomes, joined = take_labels(model, ids)
        score_labels(model, joined, labels)
        routes_of(model).judge_quality()
        answer = feedback_answer(model, ids, outcomes)
    return Response(encode(answer.as_json(), fmt), media_type=CONTENT_TYPE_HEADER[fmt].decode())


async def quality(request: Request) -> Response:
    app, name = request.app.state.fastserve, request.path_params["name"]
    answer = await app.control.view("quality", name) if app.control else quality_report(app.registry, name)
    return Response(encode(answer, JSON), media_type=JSON)
