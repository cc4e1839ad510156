"""The import graph of ``irlens/`` (read with :mod:`ast`, never imported), its loops, and
the floors no module may climb.

Every ``import``/``from ... import`` counts, at any depth (function-level imports too: they
run sooner or later), except under ``if TYPE_CHECKING:`` (never run). ``from irlens.a
import b`` is an edge to ``irlens.a.b`` when that is a module, else to ``irlens.a``.
With ``packages=True`` (``--packages``) importing
``irlens.a.b`` is also an edge to the package ``irlens.a``, whose ``__init__`` runs first
(never to the root package ``irlens``, which Python has always started by then); that
graph adds the loops between a package's ``__init__`` and its own modules.

Kept under ``tests/`` because a test runs it (``tests/test_import_graph.py``); run it by
hand to see the loops, the floor violations and the private names taken across
packages::

    python tests/import_graph.py [--packages]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "irlens"

# The floors, bottom first: a module may import its own floor or lower ones, never higher.
# A name covers the module and, for a package, everything in it.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("irlens.errors", "irlens._warn", "irlens._io", "irlens._families",
              "irlens.executors")),
    ("bottom", ("irlens.artifacts", "irlens._encoding", "irlens.cache", "irlens.models",
                "irlens.hooks", "irlens.data", "irlens.runs", "irlens.retrieval",
                "irlens.evaluation", "irlens.paths", "irlens.report")),
    ("analyses", ("irlens.attribution", "irlens.neurons", "irlens.patching",
                  "irlens.probing", "irlens.activations", "irlens.editing", "irlens.sae",
                  "irlens.training")),
    ("orchestration", ("irlens.study", "irlens.distributed", "irlens.options")),
    ("interface", ("irlens.cli", "irlens.__main__", "irlens")),
]
# The modules the job protocol keeps out of any loop (issue 19).
KNOT = ("irlens.artifacts", "irlens._encoding", "irlens.distributed")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module under ``root``: dotted name -> file."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _import_nodes(path: Path):
    """The import statements of a file, at any depth, outside ``if TYPE_CHECKING:``."""
    todo = [ast.parse(path.read_text(), str(path))]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, known: set[str], packages: bool) -> set[str]:
    """The irlens modules that module ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    edges = set()
    for target in found:
        while target and target not in known:  # ``import irlens.a.b.c`` of an attribute
            target = target.rpartition(".")[0]
        if not target.startswith("irlens"):
            continue
        edges.add(target)
        parent = target.rpartition(".")[0] if packages else ""
        while parent and parent != "irlens":  # the packages that run first
            edges.add(parent)
            parent = parent.rpartition(".")[0]
    edges.discard(name)
    return edges


def graph(root: Path = ROOT, packages: bool = False) -> dict[str, set[str]]:
    """Module -> the irlens modules it imports (``packages``: and the packages that run
    first)."""
    found = modules(root)
    return {name: _targets(name, path, set(found), packages) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: strongly connected components of more than one module (Tarjan),
    each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative, so deep graphs never hit the recursion limit
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return sorted(found, key=lambda c: (-len(c), c))


def floor_of(name: str) -> int:
    """The floor of module ``name`` (the most specific entry of :data:`FLOORS` wins)."""
    best, depth = None, -1
    for level, (_, names) in enumerate(FLOORS):
        for prefix in names:
            inside = name.startswith(prefix + ".") and prefix != "irlens"
            if (name == prefix or inside) and prefix.count(".") > depth:
                best, depth = level, prefix.count(".")
    if best is None:
        raise KeyError(f"module {name} is on no floor; add it to FLOORS in {__file__}")
    return best


def climbs(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module imports one on a higher floor."""
    return sorted((a, b) for a, targets in edges.items() for b in targets
                  if floor_of(b) > floor_of(a))


def _package(name: str) -> str:
    """The subpackage a module belongs to (``irlens.a`` for ``irlens.a.b``), or the module."""
    return ".".join(name.split(".")[:2])


def private_imports(root: Path = ROOT) -> list[tuple[str, str]]:
    """(importer, ``module.name``) pairs where a module takes a private name (``_x``), or a
    private module of a subpackage (``irlens.a._b``), from another subpackage."""
    found = modules(root)
    out = set()
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _import_nodes(path):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [(base, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [(alias.name, "") for alias in node.names]
            else:
                continue
            for module, attr in targets:
                if not module.startswith("irlens.") or _package(module) == _package(name):
                    continue
                inner = module.split(".")[2:]
                if attr.startswith("_") or any(part.startswith("_") for part in inner):
                    out.add((name, f"{module}.{attr}" if attr else module))
    return sorted(out)


def main(argv: list[str]) -> int:
    edges = graph(packages="--packages" in argv)
    loops = cycles(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports")
    print(f"{len(loops)} import loop(s)")
    for loop in loops:
        print(f"  {len(loop)} modules: {', '.join(loop)}")
    up = climbs(edges)
    print(f"{len(up)} import(s) climbing a floor")
    for a, b in up:
        print(f"  {a} ({FLOORS[floor_of(a)][0]}) -> {b} ({FLOORS[floor_of(b)][0]})")
    private = private_imports()
    print(f"{len(private)} private name(s) taken from another package")
    for a, b in private:
        print(f"  {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
