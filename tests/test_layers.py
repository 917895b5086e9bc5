"""Arrows point down: no smpc module imports a module of a higher layer.

The layers, bottom first, are the list below; docs/architecture.md shows the same table (checked
here, so the picture cannot drift from the code). Every import counts: module-level, inside a
function (the lazy imports that hide a cycle) and under ``if TYPE_CHECKING``. Imports within one
layer are free, but no two modules may import each other, directly or around a loop. Also: only
the gRPC transport and the party service import grpc (and the generated stubs in smpc/v1 they
load), and nothing in smpc imports the repository's benchmarks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smpc"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

LAYERS: list[tuple[str, list[str]]] = [
    ("plain", ["smpc.errors", "smpc.tables", "smpc.datasets"]),
    ("sharing", ["smpc.allocator", "smpc.ring", "smpc._ringkernels", "smpc.prg", "smpc.fixedpoint", "smpc.sharing"]),
    ("party runtime", ["smpc.context", "smpc.transport.*", "smpc.v1.*"]),
    ("protocols", ["smpc.protocols.*"]),
    ("value type", ["smpc.secret", "smpc.simulation", "smpc"]),
    ("stats and join", ["smpc.stats.*", "smpc.join", "smpc.grouping", "smpc.dp", "smpc.buckets"]),
    ("analyses", ["smpc.analyses.*"]),
    ("applications", ["smpc.service.*", "smpc.analyze", "smpc.costs", "smpc.workers"]),
    ("command line", ["smpc.cli", "smpc.bench_cli"]),
]
"""Bottom first. ``smpc.pkg.*`` is the package ``smpc.pkg`` and every module in it; ``smpc`` alone
is the package's front (``smpc/__init__.py``), which re-exports the value type."""

TEMPORARY_ALLOWLIST: dict[tuple[str, str], str] = {}
"""Upward imports tolerated until the refactor that removes them lands. Each entry must still be
needed (a stale one fails ``test_the_allowlist_holds_only_live_violations``): delete it with the
import it excuses."""

GRPC_IMPORTERS = ["smpc.transport.grpc", "smpc.service.*", "smpc.v1.*"]
"""Who may import grpc, and the generated stubs of smpc/v1 (which import grpc themselves)."""


def _extension_modules() -> list[str]:
    """Compiled modules setup.py builds into the package (no .py file to find)."""
    return re.findall(r"""Extension\(\s*["'](smpc\.[\w.]+)["']""", (ROOT / "setup.py").read_text())


def _modules() -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    for name in _extension_modules():
        found[name] = None
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``path``; names resolve to the module that
    defines them (``from smpc import ring`` is smpc.ring, ``from smpc import simulate`` is smpc)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append((child if child in MODULES else base, node.lineno))
    return found


def _smpc_module(name: str) -> str | None:
    """The smpc module an imported dotted name lives in (``smpc.protocols.sort`` for
    ``import smpc.protocols.sort``), or None for a name outside smpc."""
    if name != "smpc" and not name.startswith("smpc."):
        return None
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _matches(module: str, patterns: list[str]) -> bool:
    return any(module == pattern[:-2] or module.startswith(pattern[:-1]) if pattern.endswith(".*")
               else module == pattern for pattern in patterns)


def _layer_of(module: str) -> int | None:
    for level, (_, patterns) in enumerate(LAYERS):
        if _matches(module, patterns):
            return level
    return None


def _edges() -> dict[tuple[str, str], int]:
    """(importer, imported smpc module) -> first line of that import."""
    edges: dict[tuple[str, str], int] = {}
    for module, path in MODULES.items():
        if path is None:
            continue
        for name, line in _imports(module, path):
            target = _smpc_module(name)
            if target is not None and target != module:
                edges.setdefault((module, target), line)
    return edges


def _upward() -> dict[tuple[str, str], int]:
    layer = {m: _layer_of(m) for m in MODULES}
    return {(a, b): line for (a, b), line in _edges().items()
            if None not in (layer[a], layer[b]) and layer[b] > layer[a]}


def test_every_module_has_a_layer():
    """A new or renamed module takes its place in LAYERS (and in docs/architecture.md)."""
    homeless = sorted(m for m in MODULES if _layer_of(m) is None)
    assert not homeless, f"modules in no layer of tests/test_layers.py LAYERS: {homeless}"
    for name, patterns in LAYERS:
        for pattern in patterns:
            assert any(_matches(m, [pattern]) for m in MODULES), f"layer {name!r}: {pattern} names no module"


def test_arrows_point_down():
    """No import from a lower layer to a higher one, lazy imports included."""
    upward = {edge: line for edge, line in _upward().items() if edge not in TEMPORARY_ALLOWLIST}
    lines = [f"{MODULES[a].relative_to(ROOT)}:{line}: {a} ({LAYERS[_layer_of(a)][0]}) imports "
             f"{b} ({LAYERS[_layer_of(b)][0]})" for (a, b), line in sorted(upward.items())]
    assert not lines, "imports that point up a layer:\n" + "\n".join(lines)


def test_the_allowlist_holds_only_live_violations():
    stale = sorted(set(TEMPORARY_ALLOWLIST) - set(_upward()))
    assert not stale, f"TEMPORARY_ALLOWLIST entries no longer needed (delete them): {stale}"


def test_no_import_cycles():
    """Not even within a layer: two modules that need each other are one concern or a missing third."""
    graph: dict[str, set[str]] = {}
    for a, b in _edges():
        if (a, b) not in TEMPORARY_ALLOWLIST:
            graph.setdefault(a, set()).add(b)
    # the package front re-exports the value type; a module that imports ``smpc`` for
    # ``smpc.SecretTensor`` depends on smpc.secret, not on everything the front happens to load
    facade_users = [a for a, targets in graph.items() if "smpc" in targets]
    for a in facade_users:
        graph[a].discard("smpc")
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_only_the_grpc_transport_and_the_service_import_grpc():
    importers = {}
    for module, path in MODULES.items():
        if path is None:
            continue
        for name, line in _imports(module, path):
            wire = name == "grpc" or name.startswith("grpc.") or (_smpc_module(name) or "").startswith("smpc.v1")
            if wire and not _matches(module, GRPC_IMPORTERS):
                importers[f"{path.relative_to(ROOT)}:{line}"] = name
    assert not importers, f"grpc (or its generated stubs) imported outside the transport and service: {importers}"


def test_nothing_in_smpc_imports_the_benchmarks():
    found = {}
    for module, path in MODULES.items():
        if path is None:
            continue
        for name, line in _imports(module, path):
            if name.split(".")[0] in ("benchmarks", "smpc_compare"):
                found[f"{path.relative_to(ROOT)}:{line}"] = name
    assert not found, f"smpc imports the repository's benchmarks (not part of the installed package): {found}"


def render_layer_table() -> str:
    """The table docs/architecture.md shows, top layer first."""
    rows = [f"{level}  {name:<15} {', '.join(patterns)}" for level, (name, patterns) in enumerate(LAYERS)]
    return "\n".join(reversed(rows))


def test_the_documented_layers_are_these():
    text = ARCHITECTURE.read_text()
    table = render_layer_table()
    assert table in text, f"docs/architecture.md must show the layers of tests/test_layers.py:\n{table}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The walker is not blind: a function-level import and a relative one are both found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from smpc.service import server\n\nfrom ..secret import SecretTensor\n"
                     "from smpc import simulate, ring\n")
    found = {_smpc_module(name) for name, _ in _imports("smpc.protocols.probe", probe)}
    assert found == {"smpc.service.server", "smpc.secret", "smpc", "smpc.ring"}
