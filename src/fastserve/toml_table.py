"""A TOML table read key by key, so that unknown keys and wrong types are reported with their place."""

from __future__ import annotations

from typing import Any

from fastserve.exceptions import ConfigError


class TomlTable:
    """A TOML table read key by key, so that unknown keys and wrong types are reported with their place."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self._data = dict(data)
        self._where = where

    @property
    def where(self) -> str:
        return self._where

    def fail(self, why: str) -> ConfigError:
        """An error about this table, to raise."""
        return ConfigError(f"{self._where}: {why}")

    def take(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self._data:
            return default
        value = self._data.pop(key)
        # bool is an int in Python; an int field must not accept `true`.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            value_ok = False
        else:
            value_ok = isinstance(value, kind)
        if not value_ok:
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"{self._where}: `{key}` must be {names}, got {type(value).__name__} {value!r}")
        return value

    def need(self, key: str, kind: type | tuple[type, ...]) -> Any:
        """A key that has no default."""
        if key not in self._data:
            raise self.fail(f"`{key}` is required")
        return self.take(key, kind, None)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.take(key, str, default)
        if value not in choices:
            raise ConfigError(f"{self._where}: `{key}` must be one of {', '.join(choices)}; got {value!r}")
        return value

    def positive(self, key: str, default: int, *, minimum: int = 1) -> int:
        value: int = self.take(key, int, default)
        if value < minimum:
            raise ConfigError(f"{self._where}: `{key}` must be >= {minimum}, got {value}")
        return value

    def sub(self, key: str) -> TomlTable:
        return TomlTable(self.take(key, dict, {}), f"{self._where} [{key}]")

    def done(self) -> None:
        if self._data:
            unknown = ", ".join(f"`{k}`" for k in sorted(self._data))
            raise ConfigError(f"{self._where}: unknown key {unknown}; see docs/configuration.md for the keys")
