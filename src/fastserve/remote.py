"""`fastserve models status|load|unload|promote|rollback`: calls to a running server's admin API."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fastserve.exceptions import FastserveError


class RemoteError(FastserveError):
    """The server refused the call or could not be reached; the message carries its answer."""

    code = "remote"


def token(path: str | None) -> str | None:
    """From --token-file, else $FASTSERVE_ADMIN_TOKEN."""
    return Path(path).read_text(encoding="utf-8").strip() if path else os.environ.get("FASTSERVE_ADMIN_TOKEN")


def call(url: str, method: str, path: str, admin_token: str | None, timeout: float = 120.0) -> Any:
    """One request to the server; the decoded JSON answer, or RemoteError with the server's error message."""
    request = urllib.request.Request(url.rstrip("/") + path, method=method, data=b"" if method == "POST" else None)
    if admin_token:
        request.add_header("Authorization", f"Bearer {admin_token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace")[:500]
        raise RemoteError(f"{method} {path}: {exc.code} {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RemoteError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}; is the server running there?") from None


def describe(model: dict[str, Any]) -> str:
    """A model's status as a few lines of text."""
    lines = [f"{model['name']}  primary: {model['primary'] if model['primary'] is not None else 'none'}"
             + (f" (promoted: v{model['pinned']})" if model.get("pinned") is not None else "")]
    for v in model["versions"]:
        extra = f"  load {v['load_seconds']:.3f} s" if "load_seconds" in v else ""
        error = f"  {v['error']}" if v.get("error") else ""
        lines.append(f"  v{v['version']}  {v['state']}{extra}{error}")
    for event in model.get("events", [])[-10:]:
        version = f" v{event['version']}" if "version" in event else ""
        detail = f": {event['detail']}" if event.get("detail") else ""
        lines.append(f"    {event['at']}  {event['event']}{version}{detail}")
    return "\n".join(lines)


def drift_table(report: dict[str, Any]) -> str:
    """GET /v1/models/{name}/drift as a table: per serving version, the last window's columns, drifting first."""
    lines = []
    for version in report["versions"]:
        drift = version.get("drift")
        if drift is None:
            lines.append(f"v{version['version']}  {version['state']}  no drift monitoring ({version.get('why', '')})")
            continue
        last = drift.get("last_window")
        lines.append(f"v{version['version']}  {version['state']}  status {drift['status']}  windows {drift['windows']}"
                     f"  rows in current window {drift['current_window_rows']}")
        if not last:
            continue
        lines.append(f"  {'column':<28} {'status':<6} {'psi':>8} {'ks':>8} {'js':>8} {'z':>8} {'missing z':>9}")
        order = {"alert": 0, "warn": 1, "ok": 2}
        for c in sorted(last["inputs"] + last["predictions"], key=lambda c: (order[c["status"]], -abs(c["z"] or 0))):
            def num(v: Any) -> str:
                return f"{v:8.3f}" if v is not None else f"{'-':>8}"
            lines.append(f"  {c['name'][:28]:<28} {c['status']:<6} {num(c['psi'])} {num(c['ks'])} {num(c['js'])} "
                         f"{num(c['z'])} {num(c.get('missing_z')):>9}")
    return "\n".join(lines)


def quality_table(report: dict[str, Any]) -> str:
    """GET /v1/models/{name}/quality as a table: per version, its reference, last window and since load."""
    store, ids = report.get("store"), report["ids"]
    kept = (f"{store['kept_requests']} requests, {store['bytes'] / 2**20:.1f} of {store['max_bytes'] / 2**20:.1f} "
            "MiB" if store else "none yet")
    lines = [f"{report['model']}: answers kept for labels: {kept}; ids in feedback: joined {ids['joined']}, unknown "
             f"{ids['unknown']}, expired {ids['expired']}, repeated {ids['repeated']}"]
    for version in report["versions"]:
        quality = version.get("quality")
        if quality is None:
            lines.append(f"v{version['version']}  {version['state']}  no live quality ({version.get('why', '')})")
            continue
        lines.append(f"v{version['version']}  {version['state']}  {quality['kind']}  status {quality['status']}  "
                     f"windows {quality['windows']}")
        last = quality.get("last_window") or {}
        names = [k for k in ("accuracy", "log_loss", "brier", "roc_auc", "calibration_error", "mae", "rmse", "bias")
                 if any(k in (scope or {}) for scope in (quality.get("reference"), last, quality["since_load"]))]
        lines.append(f"  {'':<16}{'rows':>8}" + "".join(f"{n:>19}" for n in names))
        for title, figures in (("reference", quality.get("reference")), ("last window", last),
                               ("current window", quality["current_window"]), ("since load", quality["since_load"])):
            if not figures:
                continue
            cells = "".join(f"{figures[n]:>19.4f}" if figures.get(n) is not None else f"{'-':>19}" for n in names)
            lines.append(f"  {title:<16}{figures.get('rows', 0):>8}{cells}")
        for name, test in (last.get("tests") or {}).items():
            if test["status"] != "ok":
                lines.append(f"  {test['status']}: {name} {test['live']} vs {test['reference']} at reference "
                             f"(z {test['z']})")
    return "\n".join(lines)
