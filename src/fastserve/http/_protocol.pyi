from typing import Any

from fastserve.config import ConnectionLimits
from fastserve.http.admission import Admission
from fastserve.metrics import RequestStats

class Settings:
    app: Any
    limits: ConnectionLimits
    max_body_bytes: int
    stats: RequestStats
    refused_counts: dict[str, int]
    admission: Admission | None
    keep_alive_s: float
    root_path: str
    draining: bool
    raw_header_limit: int
    def __init__(self, app: Any, limits: ConnectionLimits, max_body_bytes: int, stats: RequestStats,
                 refused_counts: dict[str, int], admission: Admission | None, keep_alive_s: float,
                 root_path: str = "") -> None: ...
    def __call__(self, config: Any = None, server_state: Any = None, app_state: Any = None,
                 _loop: Any = None) -> HttpConnection: ...

class HttpConnection:
    settings: Settings
    head: bytes
    door_waiting: int
    write_paused: bool
    def overdue(self, now: float) -> tuple[str, bytes] | None: ...
    def refuse(self, answer: tuple[str, bytes]) -> None: ...
    def shutdown(self) -> None: ...
