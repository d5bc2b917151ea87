"""Fuzz targets shared by the test suite (a few hundred examples each) and `benchmarks/fuzz.py` (millions).

Each target is a check over one generated input: it runs a decoder or a compiled-core entry point and says what may
come out. Only the project's own errors (`FastserveError`) may escape for bad data, and `ValueError` / `TypeError`
only where the API is misused (wrong buffer shapes, wrong argument types), as the docstrings of the core say.
Anything else, a crash of the process, or an answer that breaks an invariant is a bug.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgpack
import numpy as np
import orjson
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastserve._core import Feature, FeatureTransform, fill_rows, first_non_finite
from fastserve._core.batcher import PUSHED, BatchQueue, RunTimeModel
from fastserve._core.sketch import BinnedSketch
from fastserve.config import InputOptions, RuntimeOptions
from fastserve.exceptions import FastserveError, InvalidInput, MalformedBody
from fastserve.features import load_transform
from fastserve.http.codecs import JSON, MSGPACK, decode, encode
from fastserve.http.errors import error_body
from fastserve.http.inputs import predict_inputs
from fastserve.runtime import ModelSession

MODELS = Path(__file__).resolve().parents[2] / "models"
CHURN = MODELS / "churn" / "1"
INT64 = (-(2**63), 2**63 - 1)

# --- values as JSON and msgpack decode them, with the awkward ones made likely ---------------------------------------

EXTREME_INTS = [0, -1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64, -(2**64) - 1]
EXTREME_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 3.4028235e38, 3.5e38, -3.5e38, 1.7976931348623157e308]
# Over 4300 digits an int has no str() or repr() by default: messages must not try. Built lazily, as hypothesis
# prints its strategies with repr().
HUGE = st.sampled_from([400, 5000]).map(lambda digits: -(10**digits))
ints = st.integers() | st.sampled_from(EXTREME_INTS) | HUGE
floats = st.floats() | st.sampled_from(EXTREME_FLOATS)
numbers = ints | floats
# Decoders never produce a lone surrogate (orjson and msgpack refuse them); only direct calls of the core can.
texts = st.text(max_size=12) | st.sampled_from(["", "FR", "basic", "1", "nan", "a" * 300])
core_texts = texts | st.just("\ud800")
scalars = st.none() | st.booleans() | numbers | texts | st.binary(max_size=12)
keys = texts | st.binary(max_size=6)  # msgpack maps may have str or bytes keys (strict_map_key)


def values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Anything a decoder may hand over: nested lists and maps of scalars."""
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
                        max_leaves=max_leaves)


mostly_numbers = st.one_of(numbers, numbers, numbers, scalars)


# --- the bundled churn model: a real session and its real feature spec -----------------------------------------------

@functools.cache
def churn_session() -> ModelSession:
    return ModelSession(CHURN / "model.onnx", RuntimeOptions(), "churn v1")


@functools.cache
def churn_transform(strict: bool) -> FeatureTransform:
    transform = load_transform(CHURN, None, strict)
    if transform is None:
        raise RuntimeError(f"{CHURN} has no feature spec")
    return transform


@functools.cache
def double_session() -> ModelSession:
    """A float64 model with 4 features (a real scikit-learn logistic regression)."""
    from tests.conftest import write_tiny_model

    folder = Path(tempfile.mkdtemp(prefix="fastserve-fuzz-"))
    return ModelSession(write_tiny_model(folder, double=True), RuntimeOptions(), "tiny v1")


def churn_fields() -> list[str]:
    return list(churn_transform(False).fields)


field_names = st.deferred(lambda: st.sampled_from(churn_fields())) | texts
field_values = st.one_of(numbers, numbers, scalars, st.sampled_from(["FR", "US", "basic", "premium", "partner"]),
                         values(6))
core_values = field_values | core_texts


def rows(width: int) -> st.SearchStrategy[list[Any]]:
    row = st.lists(mostly_numbers, min_size=width, max_size=width) | st.lists(mostly_numbers, max_size=width + 1)
    return st.lists(row | scalars, max_size=4)


def tensors(width: int) -> st.SearchStrategy[dict[Any, Any]]:
    """Raw msgpack tensors: right or wrong dtype, shape and byte count."""
    dtype = st.sampled_from(["float32", "float64", "int32", "int64"]) | scalars | values(4)
    shape = st.lists(st.integers(-2, 5) | st.sampled_from([width, 2**40]) | scalars, max_size=3)

    def tensor(d: Any, s: Any, n: int, fill: float, extra: dict[Any, Any]) -> dict[Any, Any]:
        size = np.dtype({"float32": "<f4", "float64": "<f8", "int32": "<i4"}.get(d, "<i8")).itemsize if (
            type(d) is str) else 4
        count = n * width if n >= 0 else abs(n)
        with np.errstate(over="ignore"):  # a huge fill becomes inf in float32: a value to refuse, on purpose
            data = (np.full(count, fill, dtype="<f8").astype(f"<f{size}" if size in (4, 8) else "<f8").tobytes()
                    if isinstance(d, str) and d.startswith("float") else bytes(count * size))
        return {"dtype": d, "shape": s, "data": data, **extra}

    return st.builds(tensor, dtype, shape, st.integers(-3, 3), floats,
                     st.dictionaries(keys, scalars, max_size=1) | st.just({}))


def records() -> st.SearchStrategy[list[Any]]:
    record = st.dictionaries(field_names, field_values, max_size=24)
    return st.lists(record | scalars, max_size=4)


def columns() -> st.SearchStrategy[dict[Any, Any]]:
    return st.dictionaries(field_names, st.lists(field_values, max_size=4) | scalars, max_size=24)


def predict_bodies(width: int = 22) -> st.SearchStrategy[Any]:
    """Predict bodies: mostly well-formed objects with wrong parts, sometimes anything at all."""
    data = st.one_of(
        st.tuples(st.just("inputs"), rows(width) | tensors(width)),
        st.tuples(st.just("records"), records()),
        st.tuples(st.just("columns"), columns()),
        st.tuples(keys, values(6)),
    )
    extra = st.dictionaries(st.sampled_from(["timeout_ms", "inputs", "records", "columns"]) | keys,
                            numbers | values(4), max_size=2)
    body = st.builds(lambda kv, more: {**more, kv[0]: kv[1]}, data, st.just({}) | extra)
    return body | values()


# --- targets ---------------------------------------------------------------------------------------------------------

def check_error_encodes(exc: FastserveError) -> None:
    """What the server would send for `exc` encodes in both formats (a detail holding bytes would not)."""
    for fmt in (JSON, MSGPACK):
        encode(error_body(exc.code, exc.message, exc.detail), fmt)


def check_decode(body: bytes) -> None:
    """`codecs.decode`: a value, or MalformedBody."""
    for fmt in (JSON, MSGPACK):
        try:
            decode(body, fmt)
        except MalformedBody as exc:
            check_error_encodes(exc)


def check_predict_inputs(payload: Any, double: bool, allow_non_finite: bool, strict: bool, max_rows: int) -> None:
    """`inputs.predict_inputs` on any decoded body: a matrix the model takes, or InvalidInput."""
    session = double_session() if double else churn_session()
    transform = None if double else churn_transform(strict)
    options = InputOptions(allow_non_finite=allow_non_finite, max_rows=max_rows,
                           unknown_fields="error" if strict else "ignore")
    try:
        x, timeout, raw = predict_inputs(payload, session, options, transform, raw_fields=transform is not None)
    except InvalidInput as exc:
        check_error_encodes(exc)
        return
    if x.dtype != session.input_dtype or x.ndim != 2 or x.shape[1] != session.n_features:
        raise AssertionError(f"matrix {x.dtype}{x.shape} for a model of {session.n_features} {session.input_dtype}")
    if not 1 <= x.shape[0] <= max_rows:
        raise AssertionError(f"{x.shape[0]} rows accepted with max_rows={max_rows}")
    if not allow_non_finite and not np.isfinite(x).all():
        raise AssertionError("non-finite values accepted")
    if timeout is not None and not 0 < timeout < 1e9:
        raise AssertionError(f"timeout {timeout!r} accepted")
    if raw is not None and (transform is None or raw.shape != (x.shape[0], len(transform.fields))):
        raise AssertionError(f"raw field codes of shape {raw.shape} for {x.shape[0]} rows")


def check_predict_body_bytes(data: bytes) -> None:
    """Raw bytes through the whole decoding path: the first byte picks the format and the model's options, the rest
    is the body. A fuzzer mutating bytes reaches `predict_inputs` with whatever msgpack or JSON decodes to."""
    if not data:
        return
    flags, body = data[0], data[1:]
    try:
        payload = decode(body, MSGPACK if flags & 1 else JSON)
    except MalformedBody:
        return
    check_predict_inputs(payload, bool(flags & 2), bool(flags & 4), bool(flags & 8), (1, 3, 4096, 4096)[flags >> 6])


def _first_bad_cell(rows: list[Any], width: int, allow_non_finite: bool, float32: bool) -> str | None:
    """Where `fill_rows` must stop, by a plain reading of its contract, or None when every cell is good."""
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            return f"$[{i}]"
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"$[{i}][{j}]"
            try:
                x = float(v)
            except OverflowError:
                return f"$[{i}][{j}]"
            if not math.isfinite(x):
                if not allow_non_finite:
                    return f"$[{i}][{j}]"
            elif float32 and abs(x) > 3.4028234663852886e38:
                return f"$[{i}][{j}]"
    return None


def check_fill_rows(rows: list[Any], width: int, allow_non_finite: bool, float32: bool) -> None:
    """`fill_rows` writes exactly the numbers given, or stops at the first bad cell and names it."""
    out = np.zeros((len(rows), width), dtype=np.float32 if float32 else np.float64)
    expected = _first_bad_cell(rows, width, allow_non_finite, float32)
    try:
        n = fill_rows(rows, out, allow_non_finite, "$")
    except InvalidInput as exc:
        check_error_encodes(exc)
        if exc.detail["path"] != expected:
            raise AssertionError(f"refused at {exc.detail['path']}, the first bad cell is {expected}") from exc
        return
    if expected is not None:
        raise AssertionError(f"accepted a bad cell at {expected}")
    want = np.array([[float(v) for v in row] for row in rows], dtype=np.float64).reshape(len(rows), width)
    if n != len(rows) or not np.array_equal(out, want.astype(out.dtype), equal_nan=True):
        raise AssertionError(f"wrote {out!r}, expected {want!r}")


def check_first_non_finite(x: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(x))
    got = first_non_finite(x)
    if got != (int(bad[0]) if bad.size else -1):
        raise AssertionError(f"first_non_finite = {got}, numpy says {bad[:1]}")


def check_core_misuse(call: str, args: tuple[Any, ...]) -> None:
    """Wrong argument types or shapes for the core's entry points: ValueError or TypeError (BufferError for a
    read-only array where the core writes), never a crash."""
    transform = churn_transform(False)
    functions = {
        "fill_rows": fill_rows, "first_non_finite": first_non_finite, "fill_records": transform.fill_records,
        "count_columns": transform.count_columns, "fill_columns": transform.fill_columns,
    }
    try:
        functions[call](*args)
    except (ValueError, TypeError, BufferError):
        return


# Feature constructor arguments, right and wrong.
_OPS = st.sampled_from(["log1p", "clip", "standardize", "affine"])
feature_kwargs = st.fixed_dictionaries({}, optional={
    "impute": st.none() | numbers | texts,
    "ops": st.lists(st.tuples(_OPS, floats, floats), max_size=3) | st.lists(st.tuples(texts, floats, floats),
                                                                            max_size=1),
    "edges": st.lists(floats, max_size=5),
    "lookup": st.dictionaries(texts | ints, st.integers(-1, 4) | floats, max_size=4),
    "values": st.lists(floats, max_size=5),
    "columns": st.lists(st.integers(-2, 5), max_size=5),
    "strings": st.booleans(),
    "unknown": st.sampled_from(["error", "ignore", "slot"]) | texts,
    "unknown_column": st.integers(-2, 5),
    "unknown_value": floats,
    "buckets": st.integers(-1, 6),
    "alternate_sign": st.booleans(),
    "width": st.integers(-3, 6),
})
feature_kinds = st.sampled_from(["number", "bucket_ordinal", "bucket_onehot", "category_ordinal", "category_onehot",
                                 "hash_ordinal", "hash_onehot"]) | texts
feature_fields = st.sampled_from(["a", "b", "c"])


def make_features(specs: list[tuple[str, str, dict[str, Any]]]) -> list[Feature]:
    """Features from generated arguments; inconsistent ones are refused with ValueError or TypeError."""
    features = []
    for i, (kind, field, kwargs) in enumerate(specs):
        try:
            features.append(Feature(f"f{i}", field, kind, **kwargs))
        except (ValueError, TypeError):
            continue
    return features


def _same(a: Any, b: Any) -> bool:
    return a is b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        type(a) is type(b) and a == b)


def check_transform(specs: list[tuple[str, str, dict[str, Any]]], strict: bool, recs: list[Any],
                    float32: bool) -> None:
    """Records and the same data as columns give the same matrix, or both InvalidInput; nothing else escapes."""
    features = make_features(specs)
    try:
        transform = FeatureTransform(features, strict)
    except ValueError:
        return
    dtype = np.float32 if float32 else np.float64
    by_records = np.full((len(recs), transform.width), 7.0, dtype=dtype)
    try:
        transform.fill_records(recs, by_records)
    except InvalidInput:
        by_records = None  # type: ignore[assignment]
    # Columns hold the same data when every record is an object with the same fields.
    if not recs or any(type(r) is not dict or r.keys() != recs[0].keys() for r in recs):
        return
    cols = {k: [r[k] for r in recs] for k in recs[0]}
    try:
        n = transform.count_columns(cols)
        by_columns = np.full((n, transform.width), 7.0, dtype=dtype)
        transform.fill_columns(cols, by_columns)
    except InvalidInput:
        by_columns = None  # type: ignore[assignment]
    if not any(k in transform.fields for k in cols):
        return  # columns with none of the fields are refused; records with none of them are all missing
    if (by_records is None) != (by_columns is None) or (
            by_records is not None and not np.array_equal(by_records, by_columns, equal_nan=True)):
        raise AssertionError(f"records gave {by_records!r}, columns gave {by_columns!r}")


def check_churn_transform(strict: bool, recs: list[Any], cols: dict[Any, Any]) -> None:
    """The bundled churn spec on near-valid records and columns: a matrix or InvalidInput."""
    transform = churn_transform(strict)
    out = np.empty((len(recs), transform.width), dtype=np.float32)
    try:
        transform.fill_records(recs, out)
    except InvalidInput as exc:
        check_error_encodes(exc)
    try:
        n = transform.count_columns(cols)
        transform.fill_columns(cols, np.empty((n, transform.width), dtype=np.float32))
    except InvalidInput as exc:
        check_error_encodes(exc)


sketch_edges = st.lists(st.lists(floats, max_size=6).map(sorted) | st.lists(floats, max_size=70), min_size=0,
                        max_size=3)


def check_sketch(edges: list[list[float]], batches: list[np.ndarray], merge_with: Any, column: int) -> None:
    """Counts add up (bins + NaN + Inf = rows, per column), equal numpy's searchsorted, and merge adds."""
    n = len(edges)
    low, high = np.zeros(n), np.ones(n)
    try:
        sketch = BinnedSketch(edges, low, high)
    except ValueError:
        return
    for batch in batches:
        try:
            sketch.update(batch)
        except ValueError:
            if batch.ndim == 2 and batch.shape[1] == n:
                raise
    for j in range(n):
        total = int(sketch.bin_counts(j).sum()) + sketch.nan[j] + sketch.inf[j]
        if total != sketch.rows:
            raise AssertionError(f"column {j}: {total} values counted for {sketch.rows} rows")
        e = np.asarray(edges[j], dtype=np.float64)
        values = np.concatenate([b[:, j] for b in batches if b.ndim == 2 and b.shape[1] == n] or [np.empty(0)])
        finite = values[np.isfinite(values)].astype(np.float64)
        if not np.isnan(e).any():
            want = np.bincount(np.searchsorted(e, finite, side="right"), minlength=e.size + 1)
            if not np.array_equal(sketch.bin_counts(j), want):
                raise AssertionError(f"column {j}: bins {sketch.bin_counts(j)}, numpy {want}")
    try:
        sketch.bin_counts(column)
    except ValueError:
        if 0 <= column < n:
            raise
    copy = sketch.copy()
    try:
        sketch.merge(merge_with if merge_with != "self" else copy)
    except (ValueError, TypeError):
        if merge_with == "self":
            raise
        return
    if merge_with == "self" and sketch.rows != 2 * copy.rows:
        raise AssertionError("merging a copy did not double the rows")
    sketch.reset()
    if sketch.rows != 0 or any(sketch.bin_counts(j).any() for j in range(n)):
        raise AssertionError("reset left counts")


sketch_batches = st.lists(
    hnp.arrays(np.float32, st.tuples(st.integers(0, 6), st.integers(0, 3)),
               elements=st.floats(width=32) | st.sampled_from([np.nan, np.inf, -np.inf])), max_size=3)

times = st.integers(*INT64)
queue_ops = st.lists(st.one_of(
    st.tuples(st.just("push"), st.integers(1, 40) | st.integers(-2, 2**62), times, times | st.just(2**63 - 1)),
    st.tuples(st.just("take"), times, st.integers(0, 6), st.integers(0, 6)),
    st.tuples(st.just("wait"), times),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("finished"), st.integers(-2, 100), st.integers(-5, 10**12)),
    st.tuples(st.just("alone"), st.integers(-2, 100), times, st.integers(-5, 10**12)),
    st.tuples(st.just("backlog"), times),
), max_size=40)


def check_batch_queue(max_batch: int, max_queue: int, max_delay: int, instances: int, ops: list[tuple[Any, ...]]
                      ) -> None:
    """Every queued ticket leaves exactly once (in a batch, expired, or cancelled), queued rows always equal the
    rows of the tickets still queued, and a batch holds at most its buffer and `max_batch_rows` (or one request)."""
    try:
        q = BatchQueue(max_batch, max_queue, max_delay, instances, RunTimeModel())
    except ValueError:
        return
    queued: dict[int, int] = {}
    gone: set[int] = set()
    ticket = 0

    def take(now: int, nb_size: int, ne_size: int) -> tuple[int, int]:
        batch, expired = np.full(nb_size, -1, dtype=np.int64), np.full(ne_size, -1, dtype=np.int64)
        nb, ne, total = q.take(now, batch, expired)
        out = [*batch[:nb].tolist(), *expired[:ne].tolist()]
        for t in out:
            if t not in queued:
                raise AssertionError(f"ticket {t} came out but is not queued (gone before: {t in gone})")
            gone.add(t)
        if total != sum(queued[t] for t in batch[:nb].tolist()):
            raise AssertionError(f"take said {total} rows for tickets {batch[:nb].tolist()}")
        if nb > 1 and total > max_batch:
            raise AssertionError(f"a batch of {nb} requests holds {total} rows > {max_batch}")
        for t in out:
            del queued[t]
        return nb, ne

    for op in ops:
        if op[0] == "push":
            rows, now, deadline = op[1:]
            try:
                result = q.push(ticket, rows, now, deadline)
            except (ValueError, OverflowError):
                if rows >= 1:
                    raise
                continue
            if result == PUSHED:
                queued[ticket] = rows
            ticket += 1
        elif op[0] == "take":
            nb, _ = take(*op[1:])
            if nb:
                q.finished(1, 1000)
        elif op[0] == "wait":
            q.wait_ns(op[1])
        elif op[0] == "cancel":
            if q.cancel(op[1]):
                if op[1] not in queued:
                    raise AssertionError(f"cancelled ticket {op[1]}, which is not queued")
                del queued[op[1]]
                gone.add(op[1])
        elif op[0] == "finished":
            q.finished(op[1], op[2])
        elif op[0] == "alone":
            q.ran_alone(*op[1:])
        else:
            q.backlog_ns(op[1])
        if q.queued_rows != sum(queued.values()) or q.queued_requests != len(queued):
            raise AssertionError(f"queue says {q.queued_requests} requests / {q.queued_rows} rows, "
                                 f"{len(queued)} / {sum(queued.values())} are queued")
    for _ in range(len(queued) + max_queue + 1):  # drain: each take empties at least one slot
        if not queued:
            break
        take(0, 64, 64)
    if queued:
        raise AssertionError(f"tickets {sorted(queued)} never came out")


def encoded_bodies(width: int = 22) -> st.SearchStrategy[bytes]:
    """Bytes for the wire: arbitrary, or a generated body encoded as JSON or msgpack (cut short sometimes)."""

    def as_json(v: Any) -> bytes:
        try:
            return orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # bytes, integers over 64 bits: not JSON
            return b"{"

    def as_msgpack(v: Any) -> bytes:
        try:
            return msgpack.packb(v, use_bin_type=True)
        except (TypeError, OverflowError, ValueError):
            return b"\x80"

    encoded = st.one_of(predict_bodies(width).map(as_json), predict_bodies(width).map(as_msgpack))
    cut = st.builds(lambda b, k: b[: len(b) * k // 8], encoded, st.integers(0, 7))
    return st.binary(max_size=200) | encoded | cut


# --- the real server over HTTP ---------------------------------------------------------------------------------------

GOOD_ROW = [1.0] * 22
content_types = st.sampled_from([None, "application/json", "application/msgpack", "application/x-msgpack",
                                 "application/json; charset=utf-8", "text/plain", "", "application/*",
                                 "multipart/form-data"])
# Printable ASCII; h11 refuses a value with leading or trailing blanks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip)
extra_headers = st.dictionaries(
    st.sampled_from(["accept", "x-request-timeout-ms", "content-encoding", "expect", "x-user-id", "x-anything"]),
    header_text | st.sampled_from(["application/msgpack", "*/*", "application/json;q=0", "text/html", "0", "-1",
                                   "nan", "1e400", "5", "gzip"]), max_size=3)


def check_predict_http(client: Any, path: str, body: bytes, content_type: str | None, headers: dict[str, str],
                       chunked: bool) -> None:
    """Any bytes, Content-Type and headers to predict: a 2xx, or a 4xx with an error body in the answer's format
    (or a documented 503 refusal: a deadline the client set that cannot be met); never another 5xx."""
    sent = dict(headers)
    if content_type is not None:
        sent["content-type"] = content_type
    content: Any = iter([body[: len(body) // 2], body[len(body) // 2:]]) if chunked else body
    r = client.post(path, content=content, headers=sent)
    media = r.headers.get("content-type", "")
    if media not in ("application/json", "application/msgpack"):
        raise AssertionError(f"{r.status_code} answered as {media!r}")
    answer = orjson.loads(r.content) if media == "application/json" else msgpack.unpackb(r.content)
    if r.status_code == 200:
        if set(answer) != {"model", "version", "outputs"} or r.headers.get("x-model-version") != str(
                answer["version"]):
            raise AssertionError(f"200 with {answer!r}")
        return
    if set(answer) != {"error"} or set(answer["error"]) != {"code", "message", "detail"}:
        raise AssertionError(f"{r.status_code} with {answer!r}")
    refusal = r.status_code == 503 and answer["error"]["code"] == "deadline_exceeded" and "retry-after" in r.headers
    if not (400 <= r.status_code < 500 or refusal):
        raise AssertionError(f"{r.status_code}: {answer!r}")


def check_still_serving(client: Any, path: str) -> None:
    r = client.post(path, json={"inputs": [GOOD_ROW]})
    if r.status_code != 200:
        raise AssertionError(f"a good request got {r.status_code} after fuzzing: {r.text}")


predict_paths = st.sampled_from(["/v1/models/churn/predict", "/v1/models/spend/predict",
                                 "/v1/models/churn/versions/1/predict"]) | st.builds(
    lambda v: f"/v1/models/churn/versions/{quote(v, safe='')}/predict", st.text(min_size=1, max_size=20)
    | st.sampled_from(["\u00b2", "\u0661", "9" * 5000, "01", "-1", " 1"]))  # superscript two, Arabic-Indic one
