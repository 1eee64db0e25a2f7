"""The import graph follows the layers of docs/architecture.md: no cycles between the
package's parts, and no part imports one of a higher layer (lazy imports inside functions
and ``TYPE_CHECKING`` imports count too: they are dependencies all the same).

A part is a subpackage (``leakaudit/scores/``) or a top-level module (``leakaudit/api.py``).
Parts listed here that do not exist yet are simply absent from the graph.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import leakaudit

PACKAGE = Path(leakaudit.__file__).parent

#: Layers, top first. A part may import parts of its own layer (without cycles) and of
#: any layer below it. The bottom layer holds what every part may use.
LAYERS: list[set[str]] = [
    {"cli", "__main__"},
    {"api", "resume", "guards", "distributed", "integrations"},
    {"report", "gate", "validation"},
    {"config", "io", "demo"},
    {"scores", "attacks", "models", "jacobians", "metrics", "defenses", "calibration"},
    {"linalg"},
    {"errors", "registry", "direction"},
]
LAYER = {part: depth for depth, parts in enumerate(LAYERS) for part in parts}

#: ``from leakaudit import NAME`` of a name that is not a part: the part defining it.
ROOT_NAMES = {"__version__": "errors"}  # a constant; importing it loads nothing


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def targets(node: ast.AST) -> list[str]:
    """The leakaudit parts one import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module == "leakaudit":
            return [_root_name(a.name) for a in node.names]
        names = [node.module]
    else:
        return []
    return [n.split(".")[1] for n in names if n.startswith("leakaudit.")]


def _root_name(name: str) -> str:
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file():
        return name
    if name in ROOT_NAMES:
        return ROOT_NAMES[name]
    module = leakaudit._EXPORTS[name]  # a curated name: the part that defines it
    return module.split(".")[1]


@cache
def import_graph() -> dict[str, dict[str, str]]:
    """part → imported part → the first file that imports it (for messages)."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the lazy facade re-exports every layer by design
        src = part_of(path)
        edges = graph.setdefault(src, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for dst in targets(node):
                if dst != src:
                    edges.setdefault(dst, str(path.relative_to(PACKAGE.parent)))
    return graph


def test_every_part_has_a_layer() -> None:
    unknown = sorted(p for p in import_graph() if p not in LAYER)
    assert not unknown, f"add {unknown} to LAYERS here and to docs/architecture.md"


def test_no_part_imports_a_higher_layer() -> None:
    upward = [
        f"{where}: {src} (layer {LAYER[src]}) imports {dst} (layer {LAYER[dst]})"
        for src, edges in import_graph().items()
        for dst, where in edges.items()
        if LAYER.get(dst, len(LAYERS)) < LAYER.get(src, len(LAYERS))
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_parts() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "; ".join(" -> ".join(c) for c in cycles)


def test_validation_does_not_import_the_api() -> None:
    assert "api" not in import_graph().get("validation", {})


def test_the_package_imports_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, leakaudit; assert 'torch' not in sys.modules, 'torch'; "
        "leakaudit.__all__; print(leakaudit.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_the_curated_api_resolves() -> None:
    assert sorted(leakaudit.__all__) == sorted(["__version__", *leakaudit._EXPORTS])
    for name in leakaudit._EXPORTS:
        assert getattr(leakaudit, name) is not None, name


#: The most lines a function in leakaudit/ may span, from its ``def`` line to its last line
#: (docstring included, decorators not).
MAX_FUNCTION_LINES = 60

#: Functions allowed to be longer than that, as ``path:qualified name``: none. Keep it so.
LONG_FUNCTIONS_ALLOWED: set[str] = set()


def function_lengths() -> dict[str, int]:
    """``path:qualified name`` → lines spanned, for every function and method in leakaudit/."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    lengths[f"{where}:{name}"] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.", where)
            else:
                visit(child, prefix, where)

    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        visit(ast.parse(path.read_text(encoding="utf-8")), "", where)
    return lengths


def test_no_function_is_longer_than_sixty_lines() -> None:
    lengths = function_lengths()
    too_long = sorted(
        f"{name}: {n} lines"
        for name, n in lengths.items()
        if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS_ALLOWED
    )
    assert not too_long, "split these functions:\n" + "\n".join(too_long)
