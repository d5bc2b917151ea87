"""The worst request bodies we know how to write, for every decoder, scanner and transform on the request path.

Each `Body` grows one dimension an attacker controls (keys per object, objects, nesting repeated, rows, values in a
row, digits, string length, escapes, fields per record, distinct categories, columns, tensor sizes, V2 inputs,
shapes, outputs...) in proportion to `n`: `catalogue(n)` holds every body at about n KiB, `at_limit()` every body
grown to just under the body size limit. Bodies may be valid (answered 200) or refused (4xx): what matters is the
work they cost before the answer. `raw_requests(n)` holds the header side (many headers, long values and URLs,
chunked bodies in tiny chunks, pipelined requests) as whole raw HTTP requests.

Used by tests/http/test_linear_cost.py (every body's cost is linear in n) and benchmarks/bench_bodies.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

JSON = "application/json"
MSGPACK = "application/msgpack"
BINARY = "application/octet-stream"
FEATURES = 22  # every bundled model takes 22 features
RECORDS_MODEL = "churn"  # a feature spec: records, columns and V2 raw-field inputs; unknown fields ignored
ROWS_MODEL = "churn_mlp"  # rows and tensors only
HEADER_LENGTH = "Inference-Header-Content-Length"

# A valid churn record (models/churn/1/validation_records.json): every field the spec reads.
RECORD: dict[str, Any] = {
    "age": 28.42, "tenure_months": 27.08, "monthly_spend": 15.27, "total_spend": 393.33, "support_calls": 1.0,
    "late_payments": 2.0, "logins_30d": 14.0, "session_minutes": 14.41, "devices": 1.0, "discount_pct": 10.0,
    "data_usage_gb": 9.8, "days_since_login": 7.57, "nps_score": 8.0, "contract_months_left": 1.0,
    "referrals": 0.0, "complaints_90d": 0.0, "bill_change_pct": 8.23, "payment_failures": 1.0,
    "country": "US", "plan": "basic", "channel": "web", "payment_method": "paypal",
}
NUMERIC_FIELDS = tuple(k for k, v in RECORD.items() if type(v) is float)
CATEGORY_FIELDS = tuple(k for k, v in RECORD.items() if type(v) is str)
ROW = [0.123456789] * FEATURES


@dataclass(frozen=True)
class Body:
    name: str  # short, unique, e.g. "json-keys-one-object"
    dimension: str  # what grows, e.g. "keys per object"
    path: str  # e.g. "/v1/models/churn/predict" or "/v2/models/churn_mlp/infer"
    content_type: str  # "application/json", "application/msgpack", "application/octet-stream"...
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()  # extra headers (e.g. Inference-Header-Content-Length for V2 binary)


def native(model: str) -> str:
    return f"/v1/models/{model}/predict"


def v2(model: str) -> str:
    return f"/v2/models/{model}/infer"


Builder = Callable[[int], Body]
_BUILDERS: list[Builder] = []


def _family(builder: Builder) -> Builder:
    _BUILDERS.append(builder)
    return builder


def _rep(item: bytes, count: int, sep: bytes = b",") -> bytes:
    """`count` copies of `item` joined by `sep`."""
    return (item + sep) * (count - 1) + item if count > 0 else b""


def _join(items: Any, sep: bytes = b",") -> bytes:
    return sep.join(items)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _record_json(extra: bytes = b"") -> bytes:
    """The valid record as a JSON object, with `extra` members (bytes, comma-led) before its end."""
    return _json(RECORD)[:-1] + extra + b"}"


def _records_json(extra: bytes) -> bytes:
    """`{"records": [the valid record with `extra` members]}`: valid whatever unknown members `extra` adds."""
    return b'{"records":[' + _record_json(extra) + b"]}"


def _packed_record_with(extra: bytes, extra_count: int) -> bytes:
    """The valid record as a msgpack map (map32), with `extra_count` more key/value pairs already packed in
    `extra`."""
    parts = [msgpack.packb(k) + msgpack.packb(v) for k, v in RECORD.items()]
    return b"\xdf" + struct.pack(">I", len(RECORD) + extra_count) + b"".join(parts) + extra


def _packed_array(items: bytes, count: int) -> bytes:
    return b"\xdd" + struct.pack(">I", count) + items


def _packed_records_with_field(key: str, raw_value: bytes) -> bytes:
    """`{"records": [the valid record plus `key`: raw_value]}` in msgpack."""
    record = _packed_record_with(msgpack.packb(key) + raw_value, 1)
    return b"\x81" + msgpack.packb("records") + _packed_array(record, 1)


# --- native JSON -----------------------------------------------------------------------------------------------------

@_family
def json_keys_one_object(n: int) -> Body:
    keys = 80 * n
    extra = b"," + _join(b'"k%07x":0' % i for i in range(keys))
    return Body("json-keys-one-object", "keys per object (one record)", native(RECORDS_MODEL), JSON,
                _records_json(extra))


@_family
def json_keys_top_object(n: int) -> Body:
    keys = 80 * n
    body = b'{"inputs":[' + _json(ROW) + b"]," + _join(b'"k%07x":0' % i for i in range(keys)) + b"}"
    return Body("json-keys-top-object", "keys per object (the body's own, unknown)", native(ROWS_MODEL), JSON,
                body)


@_family
def json_escaped_keys_objects(n: int) -> Body:
    objects = 78 * n
    extra = b',"x":[' + _rep(b'{"\\u0061":0}', objects) + b"]"
    return Body("json-escaped-keys-objects", "objects whose key has an escape", native(RECORDS_MODEL), JSON,
                _records_json(extra))


@_family
def json_escaped_keys_one_object(n: int) -> Body:
    keys = 56 * n
    extra = b"," + _join(b'"\\u0061%07x":0' % i for i in range(keys))
    return Body("json-escaped-keys-one-object", "keys with escapes per object", native(RECORDS_MODEL), JSON,
                _records_json(extra))


@_family
def json_duplicate_escaped_key_last(n: int) -> Body:
    # Many plain keys, then one escaped key that repeats the first: the whole object is checked slowly.
    keys = 80 * n
    extra = b"," + _join(b'"k%07x":0' % i for i in range(keys)) + b',"\\u006b0000000":1'
    return Body("json-duplicate-escaped-key-last", "keys per object, the last one escaped and repeated",
                native(RECORDS_MODEL), JSON, _records_json(extra))


@_family
def json_objects(n: int) -> Body:
    extra = b',"x":[' + _rep(b'{"a":0}', 128 * n) + b"]"
    return Body("json-objects", "small objects", native(RECORDS_MODEL), JSON, _records_json(extra))


@_family
def json_empty_objects(n: int) -> Body:
    extra = b',"x":[' + _rep(b"{}", 340 * n) + b"]"
    return Body("json-empty-objects", "empty objects", native(RECORDS_MODEL), JSON, _records_json(extra))


@_family
def json_empty_arrays(n: int) -> Body:
    extra = b',"x":[' + _rep(b"[]", 340 * n) + b"]"
    return Body("json-empty-arrays", "empty arrays", native(RECORDS_MODEL), JSON, _records_json(extra))


@_family
def json_nested_arrays(n: int) -> Body:
    # Under `x` of a record: 4 levels, then 1,000 more (the decoders refuse past 1,024).
    deep = b"[" * 1000 + b"]" * 1000
    extra = b',"x":[' + _rep(deep, max(1, n // 2)) + b"]"
    return Body("json-nested-arrays", "arrays nested 1,000 deep, repeated", native(RECORDS_MODEL), JSON,
                _records_json(extra))


@_family
def json_nested_objects(n: int) -> Body:
    deep = b'{"":' * 1000 + b"0" + b"}" * 1000
    extra = b',"x":[' + _rep(deep, max(1, n // 5)) + b"]"
    return Body("json-nested-objects", "objects nested 1,000 deep, repeated", native(RECORDS_MODEL), JSON,
                _records_json(extra))


@_family
def json_rows(n: int) -> Body:
    body = b'{"inputs":[' + _rep(_json(ROW), 4 * n) + b"]}"
    return Body("json-rows", "rows (valid up to max_rows 4,096, then refused by the row-count scan)",
                native(ROWS_MODEL), JSON, body)


@_family
def json_rows_over_limit(n: int) -> Body:
    body = b'{"inputs":[' + _rep(b"[0]", 256 * n) + b"]}"
    return Body("json-rows-over-limit", "short rows (over max_rows past 16 KiB)", native(ROWS_MODEL), JSON, body)


@_family
def json_long_row(n: int) -> Body:
    body = b'{"inputs":[[' + _rep(b"0.5", 256 * n) + b"]]}"
    return Body("json-long-row", "values in one row", native(ROWS_MODEL), JSON, body)


@_family
def json_digits(n: int) -> Body:
    number = b"0." + b"1" * (1000 * n)
    body = b'{"inputs":[[' + number + b"," + _json(ROW[1:])[1:] + b"]}"
    return Body("json-digits", "digits of one number", native(ROWS_MODEL), JSON, body)


@_family
def json_long_numbers(n: int) -> Body:
    number = b"1." + b"7" * 298 + b"e-5"  # about as many digits as a double's decimal form can have, and more
    body = b'{"inputs":[[' + _rep(number, 3 * n) + b"]]}"
    return Body("json-long-numbers", "numbers of 300 digits", native(ROWS_MODEL), JSON, body)


@_family
def json_long_string(n: int) -> Body:
    body = _json({"records": [{**RECORD, "country": "A" * (1024 * n)}]})
    return Body("json-long-string", "length of a category", native(RECORDS_MODEL), JSON, body)


@_family
def json_string_escapes(n: int) -> Body:
    value = b'"' + b'\\u00e9\\"\\\\' * (100 * n) + b'"'
    extra = b',"x":' + value + b',"country":' + value
    record = _json({k: v for k, v in RECORD.items() if k != "country"})[:-1] + extra + b"}"
    return Body("json-string-escapes", "escapes in strings", native(RECORDS_MODEL), JSON,
                b'{"records":[' + record + b"]}")


@_family
def json_records(n: int) -> Body:
    body = b'{"records":[' + _rep(_json(RECORD), 2 * n) + b"]}"
    return Body("json-records", "records (valid up to max_rows 4,096)", native(RECORDS_MODEL), JSON, body)


@_family
def json_records_categories(n: int) -> Body:
    records = [{**RECORD, "country": f"c{i:07x}", "channel": f"h{i:07x}"} for i in range(2 * n)]
    return Body("json-records-categories", "distinct unknown categories", native(RECORDS_MODEL), JSON,
                _json({"records": records}))


@_family
def json_records_unknown_fields(n: int) -> Body:
    unknown = b"," + _join(b'"u%02d":0' % k for k in range(32))
    body = b'{"records":[' + _rep(_record_json(unknown), n) + b"]}"
    return Body("json-records-unknown-fields", "records of 32 unknown fields each", native(RECORDS_MODEL), JSON,
                body)


@_family
def json_columns(n: int) -> Body:
    rows = 8 * n
    columns = {k: [v] * rows for k, v in RECORD.items()}
    return Body("json-columns", "values per column (all fields)", native(RECORDS_MODEL), JSON,
                _json({"columns": columns}))


@_family
def json_column_long(n: int) -> Body:
    body = b'{"columns":{"age":[' + _rep(b"0.5", 256 * n) + b"]}}"
    return Body("json-column-long", "values in one column", native(RECORDS_MODEL), JSON, body)


@_family
def json_columns_unknown(n: int) -> Body:
    valid = _json({"columns": {k: [v] for k, v in RECORD.items()}})[:-2]
    body = valid + b"," + _join(b'"u%07x":[0]' % i for i in range(70 * n)) + b"}}"
    return Body("json-columns-unknown", "unknown columns", native(RECORDS_MODEL), JSON, body)


@_family
def json_whitespace(n: int) -> Body:
    body = b'{"inputs":[' + _json(ROW) + b"]" + b" \n\t\r" * (256 * n) + b"}"
    return Body("json-whitespace", "whitespace", native(ROWS_MODEL), JSON, body)


@_family
def json_scan_strings(n: int) -> Body:
    body = b'{"x":[' + _rep(b'""', 340 * n) + b'],"inputs":[' + _json(ROW) + b"]}"
    return Body("json-scan-strings", "strings before the rows (row-count scan)", native(ROWS_MODEL), JSON, body)


@_family
def json_scan_nested_rows(n: int) -> Body:
    body = b'{"inputs":[[' + _rep(b'["a",{"b":"c"}]', 64 * n) + b"]]}"
    return Body("json-scan-nested-rows", "nested values inside a row (row-count scan)", native(ROWS_MODEL), JSON,
                body)


# --- native msgpack --------------------------------------------------------------------------------------------------

@_family
def msgpack_keys_one_map(n: int) -> Body:
    keys = 100 * n
    extra = b"".join(b"\xa8k%07x\x00" % i for i in range(keys))
    record = _packed_record_with(extra, keys)
    body = b"\x81" + msgpack.packb("records") + _packed_array(record, 1)
    return Body("msgpack-keys-one-map", "keys per map (one record)", native(RECORDS_MODEL), MSGPACK, body)


@_family
def msgpack_bin_keys_one_map(n: int) -> Body:
    keys = 93 * n
    extra = b"".join(b"\xc4\x08k%07x\x00" % i for i in range(keys))
    record = _packed_record_with(extra, keys)
    body = b"\x81" + msgpack.packb("records") + _packed_array(record, 1)
    return Body("msgpack-bin-keys-one-map", "bytes keys per map (one record)", native(RECORDS_MODEL), MSGPACK,
                body)


@_family
def msgpack_empty_maps(n: int) -> Body:
    count = 1024 * n
    return Body("msgpack-empty-maps", "empty maps", native(RECORDS_MODEL), MSGPACK,
                _packed_records_with_field("x", _packed_array(b"\x80" * count, count)))


@_family
def msgpack_empty_arrays(n: int) -> Body:
    count = 1024 * n
    return Body("msgpack-empty-arrays", "empty arrays", native(RECORDS_MODEL), MSGPACK,
                _packed_records_with_field("x", _packed_array(b"\x90" * count, count)))


@_family
def msgpack_small_maps(n: int) -> Body:
    count = 256 * n
    return Body("msgpack-small-maps", "small maps", native(RECORDS_MODEL), MSGPACK,
                _packed_records_with_field("x", _packed_array(b"\x81\xa1a\x00" * count, count)))


@_family
def msgpack_long_row(n: int) -> Body:
    count = 1024 * n
    body = b"\x81" + msgpack.packb("inputs") + _packed_array(_packed_array(b"\x00" * count, count), 1)
    return Body("msgpack-long-row", "values in one row", native(ROWS_MODEL), MSGPACK, body)


@_family
def msgpack_rows(n: int) -> Body:
    rows = 44 * n
    row = b"\xdc" + struct.pack(">H", FEATURES) + b"\x01" * FEATURES
    body = b"\x81" + msgpack.packb("inputs") + _packed_array(row * rows, rows)
    return Body("msgpack-rows", "rows (valid up to max_rows 4,096; msgpack has no row-count scan)",
                native(ROWS_MODEL), MSGPACK, body)


@_family
def msgpack_nested_arrays(n: int) -> Body:
    deep = b"\x91" * 1000 + b"\x90"
    count = max(1, n)
    return Body("msgpack-nested-arrays", "arrays nested 1,000 deep, repeated", native(RECORDS_MODEL), MSGPACK,
                _packed_records_with_field("x", _packed_array(deep * count, count)))


@_family
def msgpack_nested_maps(n: int) -> Body:
    deep = b"\x81\xa0" * 1000 + b"\x00"
    count = max(1, n // 2)
    return Body("msgpack-nested-maps", "maps nested 1,000 deep, repeated", native(RECORDS_MODEL), MSGPACK,
                _packed_records_with_field("x", _packed_array(deep * count, count)))


@_family
def msgpack_long_string(n: int) -> Body:
    body = msgpack.packb({"records": [{**RECORD, "country": "A" * (1024 * n)}]})
    return Body("msgpack-long-string", "length of a category", native(RECORDS_MODEL), MSGPACK, body)


@_family
def msgpack_records(n: int) -> Body:
    return Body("msgpack-records", "records (valid up to max_rows 4,096)", native(RECORDS_MODEL), MSGPACK,
                msgpack.packb({"records": [RECORD] * (3 * n)}))


@_family
def msgpack_records_categories(n: int) -> Body:
    records = [{**RECORD, "country": f"c{i:07x}", "channel": f"h{i:07x}"} for i in range(3 * n)]
    return Body("msgpack-records-categories", "distinct unknown categories", native(RECORDS_MODEL), MSGPACK,
                msgpack.packb({"records": records}))


@_family
def msgpack_columns(n: int) -> Body:
    rows = 40 * n
    columns = {k: [v] * rows for k, v in RECORD.items()}
    return Body("msgpack-columns", "values per column (all fields)", native(RECORDS_MODEL), MSGPACK,
                msgpack.packb({"columns": columns}))


@_family
def msgpack_tensor(n: int) -> Body:
    rows = 6 * n
    data = struct.pack("<d", 0.5) * (rows * FEATURES)
    body = msgpack.packb({"inputs": {"dtype": "float64", "shape": [rows, FEATURES], "data": data}})
    return Body("msgpack-tensor", "raw tensor rows (valid up to max_rows 4,096)", native(ROWS_MODEL), MSGPACK, body)


@_family
def msgpack_tensor_huge_shape(n: int) -> Body:
    body = msgpack.packb({"inputs": {"dtype": "float32", "shape": [2**62, FEATURES], "data": bytes(1024 * n)}})
    return Body("msgpack-tensor-huge-shape", "raw tensor bytes under a huge declared shape", native(ROWS_MODEL),
                MSGPACK, body)


# --- V2 JSON ---------------------------------------------------------------------------------------------------------

def _v2_tensor(rows: int, data: bytes, datatype: str = "FP32") -> bytes:
    return b'{"name":"inputs","datatype":"%s","shape":[%d,%d],"data":[%s]}' % (
        datatype.encode(), rows, FEATURES, data)


def _v2_fields(rows: int, distinct: bool = False) -> list[bytes]:
    """One input per churn field, `rows` long; with `distinct`, the categories that take unknown values (country,
    channel) hold distinct unknown strings."""
    inputs = []
    for field, value in RECORD.items():
        if type(value) is str:
            data = (_join(b'"c%07x"' % i for i in range(rows)) if distinct and field in ("country", "channel") else
                    _rep(_json(value), rows))
            datatype = b"BYTES"
        else:
            data, datatype = _rep(_json(value), rows), b"FP64"
        inputs.append(b'{"name":"%s","datatype":"%s","shape":[%d],"data":[%s]}' % (
            field.encode(), datatype, rows, data))
    return inputs


def _v2_request(inputs: list[bytes], more: bytes = b"") -> bytes:
    return b'{"inputs":[' + _join(inputs) + b"]" + more + b"}"


@_family
def v2_json_data(n: int) -> Body:
    rows = 5 * n
    body = _v2_request([_v2_tensor(rows, _rep(b"0.123456", rows * FEATURES))])
    return Body("v2-json-data", "values in data (valid up to 4,096 rows, then refused by the comma count)",
                v2(ROWS_MODEL), JSON, body)


@_family
def v2_json_data_nested(n: int) -> Body:
    rows = 5 * n
    row = b"[" + _rep(b"0.123456", FEATURES) + b"]"
    body = _v2_request([_v2_tensor(rows, _rep(row, rows))])
    return Body("v2-json-data-nested", "rows in nested data", v2(ROWS_MODEL), JSON, body)


@_family
def v2_json_int64(n: int) -> Body:
    rows = 20 * n
    body = _v2_request([_v2_tensor(rows, _rep(b"1", rows * FEATURES), "INT64")])
    return Body("v2-json-int64", "INT64 values (each checked)", v2(ROWS_MODEL), JSON, body)


@_family
def v2_json_fields(n: int) -> Body:
    return Body("v2-json-fields", "rows of raw-field inputs, distinct categories", v2(RECORDS_MODEL), JSON,
                _v2_request(_v2_fields(5 * n, distinct=True)))


@_family
def v2_json_many_inputs(n: int) -> Body:
    unknown = [b'{"name":"u%07x","datatype":"FP64","shape":[1],"data":[0]}' % i for i in range(18 * n)]
    return Body("v2-json-many-inputs", "inputs (unknown names, ignored)", v2(RECORDS_MODEL), JSON,
                _v2_request(_v2_fields(1) + unknown))


@_family
def v2_json_long_string(n: int) -> Body:
    inputs = [b'{"name":"country","datatype":"BYTES","shape":[1],"data":["%s"]}' % (b"A" * (1024 * n))
              if i.startswith(b'{"name":"country"') else i for i in _v2_fields(1)]
    return Body("v2-json-long-string", "length of a BYTES element", v2(RECORDS_MODEL), JSON, _v2_request(inputs))


@_family
def v2_json_shape_dims(n: int) -> Body:
    shape = _rep(b"1", 512 * n)
    body = _v2_request([b'{"name":"inputs","datatype":"FP32","shape":[%s],"data":[0]}' % shape])
    return Body("v2-json-shape-dims", "dimensions in a shape", v2(ROWS_MODEL), JSON, body)


@_family
def v2_json_parameters(n: int) -> Body:
    parameters = b',"parameters":{' + _join(b'"p%07x":0' % i for i in range(80 * n)) + b"}"
    body = _v2_request([_v2_tensor(1, _rep(b"0.5", FEATURES))], parameters)
    return Body("v2-json-parameters", "keys in parameters", v2(ROWS_MODEL), JSON, body)


@_family
def v2_json_outputs_repeated(n: int) -> Body:
    # Rows and requested outputs both grow: an answer holding every output once per time it is asked for would be
    # as large as their product.
    rows, outputs = 6 * n, 20 * n
    asked = b',"outputs":[' + _rep(b'{"name":"probabilities"}', outputs) + b"]"
    body = _v2_request([_v2_tensor(rows, _rep(b"0.5", rows * FEATURES))], asked)
    return Body("v2-json-outputs-repeated", "rows and requested outputs (one output asked again and again)",
                v2(ROWS_MODEL), JSON, body)


# --- V2 binary -------------------------------------------------------------------------------------------------------

def _binary(name: str, dimension: str, model: str, head: bytes, tail: bytes) -> Body:
    return Body(name, dimension, v2(model), BINARY, head + tail, ((HEADER_LENGTH, str(len(head))),))


def _binary_input(name: str, datatype: str, shape: list[int], size: int) -> bytes:
    return _json({"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}})


@_family
def v2_binary_tensor(n: int) -> Body:
    rows = 12 * n
    head = _v2_request([_binary_input("inputs", "FP32", [rows, FEATURES], rows * FEATURES * 4)])
    return _binary("v2-binary-tensor", "binary tensor rows (valid up to 4,096)", ROWS_MODEL, head,
                   struct.pack("<f", 0.5) * (rows * FEATURES))


@_family
def v2_binary_many_inputs(n: int) -> Body:
    fields = [_binary_input(f, "FP64", [1], 8) for f in NUMERIC_FIELDS]
    unknown = [b'{"name":"u%07x","datatype":"FP64","shape":[1],"parameters":{"binary_data_size":8}}' % i
               for i in range(10 * n)]
    categories = [b'{"name":"%s","datatype":"BYTES","shape":[1],"data":["%s"]}' % (f.encode(), RECORD[f].encode())
                  for f in CATEGORY_FIELDS]
    head = _v2_request(fields + unknown + categories)
    return _binary("v2-binary-many-inputs", "binary inputs (unknown names, ignored)", RECORDS_MODEL, head,
                   struct.pack("<d", 1.0) * (len(fields) + len(unknown)))


@_family
def v2_binary_bytes_elements(n: int) -> Body:
    count = 256 * n
    head = _v2_request([_binary_input("country", "BYTES", [count], 4 * count)])
    return _binary("v2-binary-bytes-elements", "BYTES elements of a raw field", RECORDS_MODEL, head,
                   b"\x00\x00\x00\x00" * count)


@_family
def v2_binary_bool(n: int) -> Body:
    count = 1024 * n
    head = _v2_request([_binary_input("age", "BOOL", [count], count)])
    return _binary("v2-binary-bool", "BOOL elements of a raw field", RECORDS_MODEL, head, b"\x01" * count)


@_family
def v2_binary_fp64_field(n: int) -> Body:
    count = 128 * n
    head = _v2_request([_binary_input("age", "FP64", [count], 8 * count)])
    return _binary("v2-binary-fp64-field", "FP64 elements of a raw field", RECORDS_MODEL, head,
                   struct.pack("<d", 30.0) * count)


@_family
def v2_binary_head_values(n: int) -> Body:
    # A JSON request sent as binary (its header length the whole body): the head is never counted before parsing.
    head = _v2_request([_v2_tensor(1, _rep(b"0", 512 * n))])
    return _binary("v2-binary-head-values", "JSON values in the head of a binary request", ROWS_MODEL, head, b"")


@_family
def v2_binary_head_fields(n: int) -> Body:
    # Raw-field inputs of many rows in the head of a binary request: the rows are over the limit, every value is
    # read before that is known unless the row count is checked first.
    rows = 1024 * n
    head = _v2_request([b'{"name":"age","datatype":"INT64","shape":[%d],"data":[%s]}' % (rows, _rep(b"1", rows))])
    return _binary("v2-binary-head-fields", "INT64 values of a raw field in the head of a binary request",
                   RECORDS_MODEL, head, b"")


@_family
def v2_binary_shape_dims(n: int) -> Body:
    shape = _rep(b"1", 512 * n)
    head = _v2_request([b'{"name":"inputs","datatype":"FP32","shape":[%s],"parameters":{"binary_data_size":4}}'
                        % shape])
    return _binary("v2-binary-shape-dims", "dimensions in a shape (binary request)", ROWS_MODEL, head,
                   b"\x00" * 4)


@_family
def v2_binary_outputs_repeated(n: int) -> Body:
    # Rows sent as binary data (not counted by the scan of the request object), outputs asked again and again.
    rows, outputs = 10 * n, 6 * n
    asked = b',"outputs":[' + _rep(b'{"name":"probabilities"}', outputs) + b"]"
    head = _v2_request([_binary_input("inputs", "FP32", [rows, FEATURES], rows * FEATURES * 4)], asked)
    return _binary("v2-binary-outputs-repeated", "binary rows and requested outputs (one output asked again and "
                   "again)", ROWS_MODEL, head, struct.pack("<f", 0.5) * (rows * FEATURES))


# --- the catalogue ---------------------------------------------------------------------------------------------------

def catalogue(n: int) -> list[Body]:
    """Every hostile body at about n KiB (sizes roughly proportional to n)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [build(n) for build in _BUILDERS]


def families() -> dict[str, Builder]:
    """Each body's builder by its name: one body at any n, without building the others."""
    return {build(1).name: build for build in _BUILDERS}


def grown(build: Builder, limit: int) -> Body:
    """`build`'s body at the largest n that keeps it under `limit` bytes (at least n = 1)."""
    # Sizes are roughly affine in n (some grow in steps: a nested block every few n): extrapolate from two sizes
    # far apart, then step down.
    small, large = len(build(16).body), len(build(64).body)
    per_n = max(1.0, (large - small) / 48)
    n = max(1, int(16 + (limit - small) / per_n))
    body = build(n)
    while len(body.body) >= limit and n > 1:
        n = max(1, min(n - 1, int(n * limit / len(body.body) * 0.999)))
        body = build(n)
    return body


def at_limit(limit: int = 8 * 1024 * 1024) -> list[Body]:
    """Every hostile body grown to just under `limit` bytes (the server's default max_body_bytes)."""
    return [grown(build, limit) for build in _BUILDERS]


# --- the header side: whole raw requests -----------------------------------------------------------------------------

def request(method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
            content_type: str = JSON) -> bytes:
    """One raw HTTP/1.1 request with a Content-Length."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


SMALL_BODY = _json({"inputs": [ROW]})


def chunked(body: bytes, chunk: int, extension: bytes = b"") -> bytes:
    parts = [b"%x%s\r\n%s\r\n" % (len(body[i:i + chunk]), extension, body[i:i + chunk])
             for i in range(0, len(body), chunk)]
    return b"".join(parts) + b"0\r\n\r\n"


def _chunked_request(body: bytes, chunk: int, extension: bytes = b"") -> bytes:
    head = (f"POST {native(ROWS_MODEL)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {JSON}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    return head + chunked(body, chunk, extension)


def _padded(size: int) -> bytes:
    """A valid small predict body padded with whitespace to `size` bytes."""
    return SMALL_BODY[:-1] + b" " * max(0, size - len(SMALL_BODY)) + b"}"


def raw_requests(n: int) -> list[tuple[str, str, bytes]]:
    """(name, dimension, whole raw HTTP request bytes) for the header side and the body's framing, growing with n;
    past the server's header limits (100 headers, 32 KiB) they are refused (431)."""
    path = native(ROWS_MODEL)
    many = [(f"X-Hostile-{i:05d}", "v") for i in range(8 * n)]
    return [
        ("many-headers", "headers", request("POST", path, SMALL_BODY, many)),
        ("long-header-value", "length of one header's value",
         request("POST", path, SMALL_BODY, [("X-Hostile", "a" * (256 * n))])),
        ("long-url", "length of the URL (query string)", request("POST", path + "?q=" + "a" * (256 * n), SMALL_BODY)),
        ("empty-lines-first", "empty lines before the request line", b"\r\n" * (512 * n) +
         request("POST", path, SMALL_BODY)),
        ("chunked-tiny-chunks", "one-byte chunks of a body", _chunked_request(_padded(170 * n), 1)),
        ("chunked-extensions", "chunks with long extensions", _chunked_request(_padded(8 * n), 1,
                                                                               b";x=" + b"e" * 120)),
        ("pipelined", "pipelined requests on one connection", request("POST", path, SMALL_BODY) * (2 * n)),
        ("pipelined-refused", "pipelined refused requests on one connection",
         request("POST", path, b'{"inputs": [[1]]}') * (4 * n)),
        ("accept-many-ranges", "media ranges in Accept",
         request("POST", path, SMALL_BODY, [("Accept", "x/y;q=0.5," * (25 * n) + "application/json")])),
        ("pipelined-gets", "pipelined short requests on one connection",
         b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * (24 * n)),
    ]
