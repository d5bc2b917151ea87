"""A compact TOML writer for feature specs: one `[[features]]` table per feature, steps and lists inline.

Floats are written with `repr`, the shortest text that reads back as the same double, so fitted numbers survive the
round trip bit for bit (`dumps` checks that by reading its own output back).
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return "[\n" + "".join(f"    {_value(v)},\n" for v in value) + "]"
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def dumps_tables(name: str, tables: list[dict[str, Any]], header: str = "") -> str:
    """An array of tables `[[name]]`, each key on its own line; nested values inline."""
    parts = [header] if header else []
    for table in tables:
        lines = [f"[[{name}]]"] + [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
        parts.append("\n".join(lines) + "\n")
    text = "\n".join(parts)
    # JSON text compares NaN with NaN, and 1 with 1.0 as different: a strict equality of what was meant.
    if json.dumps(tomllib.loads(text), sort_keys=True) != json.dumps({name: tables}, sort_keys=True):
        raise ValueError("TOML round trip changed the values")
    return text
