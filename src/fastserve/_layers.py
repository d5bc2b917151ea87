"""Who may import whom: `python -m fastserve._layers` lists every import that crosses the layers below upward,
every circle of modules, and any asyncio or onnxruntime import in the compiled core; it exits 1 when there is one.

Imports under `if TYPE_CHECKING:` count: a circle closed by a type is still a circle for the reader.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

# Lowest first. A module may import from its own package and from packages in lower layers; packages in the same
# layer are independent of each other. (`fastserve` is the package's own __init__: the version.)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fastserve", "exceptions", "numpy_encoding", "malloc", "open_files", "cores"),
    ("_core", "toml_table"),
    ("features",),
    ("config",),
    ("runtime", "drift", "quality"),
    ("batching",),
    ("registry",),
    ("routing",),
    ("metrics",),
    ("http", "export"),
    ("workers", "remote", "client", "bench"),
    ("cli",),
    ("__main__",),
)
CORE_MAY_NOT_IMPORT = ("asyncio", "onnxruntime")
KNOWN: frozenset[str] = frozenset()  # crossings still to be taken apart: none

ROOT = Path(__file__).resolve().parent


def modules() -> dict[str, Path]:
    """Module name (relative to the package, `http.app`) -> its source (.py or .pyx)."""
    out = {}
    for path in sorted([*ROOT.rglob("*.py"), *ROOT.rglob("*.pyx")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "fastserve"
        out[name] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Every module name `path` imports (absolute, as written or resolved from a relative import)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".pyx":
        return set(re.findall(r"^\s*(?:from|c?import)\s+([\w.]+)", text, re.M))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1] if package else []
                base = ".".join(["fastserve", *up, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    known = modules()
    out: dict[str, set[str]] = {}
    for name, path in known.items():
        deps = set()
        for target in imports(name, path):
            if target != "fastserve" and not target.startswith("fastserve."):
                continue
            inner = target.partition(".")[2] or "fastserve"
            while inner not in known and "." in inner:
                inner = inner.rpartition(".")[0]
            if inner in known and inner != name:
                deps.add(inner)
        out[name] = deps
    return out


def layer(module: str) -> int:
    top = module.partition(".")[0]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise ValueError(f"{module}: its package {top!r} is in no layer; add it to LAYERS in fastserve/_layers.py")


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def crossings() -> list[str]:
    """Every import that goes up a layer or across to another package of the same layer, every circle, and
    every forbidden import of the compiled core."""
    edges = graph()
    out = []
    for module, deps in sorted(edges.items()):
        top = module.partition(".")[0]
        for dep in sorted(deps):
            if dep.partition(".")[0] != top and layer(dep) >= layer(module):
                out.append(f"{module} -> {dep}")
    for group in circles(edges):
        out.append(f"circle: {', '.join(group)}")
    known = modules()
    for module, path in known.items():
        if module.startswith("_core"):
            for target in sorted(imports(module, path)):
                if target.partition(".")[0] in CORE_MAY_NOT_IMPORT:
                    out.append(f"{module} imports {target}")
    return out


def main() -> int:
    found = crossings()
    new = [line for line in found if line not in KNOWN]
    for line in found:
        print(("known: " if line in KNOWN else "") + line)
    gone = sorted(KNOWN - set(found))
    for line in gone:
        print(f"no longer found, remove it from KNOWN: {line}")
    print(f"{len(found)} crossing(s), {len(new)} not known")
    return 1 if new or gone else 0


if __name__ == "__main__":
    sys.exit(main())
