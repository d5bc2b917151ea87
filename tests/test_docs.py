"""The README and docs/ stay true: the README is short and holds the two set-up commands, links resolve, and every
flag, route and metric the pages name exists in the server."""

import argparse
import re
from pathlib import Path

import httpx

from fastserve.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text() for page in PAGES}


def named(pattern: str) -> dict[str, Path]:
    """Each match of `pattern` in the pages, with a page naming it."""
    return {m: page for page, text in TEXT.items() for m in re.findall(pattern, text)}


def test_the_readme_is_short_and_holds_the_two_set_up_commands():
    readme = TEXT[ROOT / "README.md"]
    assert len(readme.encode()) < 12 * 1024
    assert "pip install . && fastserve serve" in readme
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command == 'pip install ".[test]" && python -m pytest' and ci_command in readme


def test_links_between_pages_resolve():
    for page, text in TEXT.items():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name}: {target}"


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set()
    for action in parser._actions:
        flags.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
    return flags


def test_every_flag_named_exists():
    known = parser_flags(build_parser())
    for script in [*(ROOT / "benchmarks").glob("*.py"), ROOT / "models" / "make_models.py"]:  # their own flags
        known.update(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", script.read_text()))
    unknown = {flag: page.name for flag, page in named(r"(?<![\w-])--[a-z][a-z0-9-]*").items() if flag not in known}
    assert not unknown


def test_every_route_named_exists(server):
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    templates = [re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$") for p in paths]
    routes = named(r"\b(?:GET|POST|DELETE|PUT)`?(?:/`?(?:DELETE|POST)`?)? `?(/[^\s`|:]*)")
    assert len(routes) > 20
    for route, page in routes.items():
        optional = re.fullmatch(r"(.*)\[(/[^\]]+)\](.*)", route)  # `/v2/models/{name}[/versions/{v}]/infer`
        forms = [optional[1] + optional[3], optional[1] + optional[2] + optional[3]] if optional else [route]
        for form in forms:
            assert any(t.match(form) for t in templates), f"{page.name}: {form}"


def metric_families() -> set[str]:
    """Every family name the server's code creates (samples add _total, _bucket, _count, _sum)."""
    source = "".join(p.read_text() for p in (ROOT / "src" / "fastserve").rglob("*.py"))
    return set(re.findall(r"\"(fastserve_[a-z_]+)\"", source))


def test_every_metric_named_exists():
    families = metric_families()
    assert "fastserve_requests" in families and "fastserve_model_evictions" in families
    for name, page in named(r"fastserve_[a-z_|*]+").items():
        head, *alternatives = name.split("|")  # `fastserve_drift_psi|ks|js_distance`: three families
        stem = head[:head.rindex("_") + 1]
        for form in [head, *(stem + alt for alt in alternatives)]:
            if form == "fastserve_process_*":
                continue  # prometheus_client's process collector, under the fastserve namespace
            base = re.sub(r"_(total|bucket|count|sum)$", "", form)
            assert form in families or base in families, f"{page.name}: {form}"
