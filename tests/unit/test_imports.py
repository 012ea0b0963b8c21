"""The import graph of mrcnn_np: no cycles, kernels are leaves, the checks module is the bottom.

Every module is parsed with ``ast`` (nothing is imported); module-level and function-level
imports both count, relative imports are resolved, and ``from . import x`` is an edge to the
submodule ``x`` when there is one. The implicit import of a module's parent packages (Python
runs ``a/__init__.py`` before ``a/b.py``) is not an edge.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import mrcnn_np

ROOT = Path(mrcnn_np.__file__).parent


def _module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join((package, *parts))] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement reaches (``from a import b`` gives ``a.b`` and ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: strip ``level`` components from this module's package
        package = module if is_package else module.rpartition(".")[0]
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def module_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: the package's modules it imports}`` for the package in folder ``root``."""
    names = _module_names(root, package)
    graph = {}
    for module, path in names.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _imported(node, module, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):  # ``from a import b``: the submodule a.b, else a itself
                subs = [t for t in targets[:-1] if t in names]
                targets = subs if len(subs) == len(targets) - 1 else [*subs, targets[-1]]
            for target in targets:
                while target and target not in names:  # ``import a.b.c`` where c is a function
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def edges_leaving(graph, source: str, allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """Edges from ``source`` (a module or package and everything below it) to modules outside
    ``allowed`` (each also a module or package with everything below it)."""
    def within(name, prefix):
        return name == prefix or name.startswith(prefix + ".")

    return sorted((m, t) for m, targets in graph.items() if within(m, source)
                  for t in targets if not any(within(t, a) for a in allowed))


def external_imports(path: Path) -> set[str]:
    """Top-level names of the packages a file imports absolutely (``numpy``, ``__future__``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module.split(".")[0])
    return found


GRAPH = module_graph(ROOT, "mrcnn_np")


def test_the_graph_sees_module_and_function_level_imports():
    assert "mrcnn_np.kernels.nms" in GRAPH["mrcnn_np.ops.nms"]  # lazy, inside a function
    assert "mrcnn_np.checks" in GRAPH["mrcnn_np.ops.nms"]  # module level, relative
    assert "mrcnn_np.kernels.device" in GRAPH["mrcnn_np.kernels.box_iou"]


def test_mrcnn_np_has_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_kernels_are_leaves():
    """kernels/ imports numpy, numba, itself and the device helpers (backend), nothing above."""
    assert edges_leaving(GRAPH, "mrcnn_np.kernels", ("mrcnn_np.kernels", "mrcnn_np.backend")) == []
    assert GRAPH["mrcnn_np.backend"] == set()


def test_the_checks_module_is_below_everything():
    assert GRAPH["mrcnn_np.checks"] == set()
    assert external_imports(ROOT / "checks.py") - set(sys.stdlib_module_names) <= {"numpy"}


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "",
        "ops/__init__.py": "from .nms import nms\n",
        "ops/nms.py": "def nms():\n    from ..kernels import nms as k\n    return k\n",
        "kernels/__init__.py": "",
        "kernels/nms.py": "from ..ops.nms import nms\n",
    })
    graph = module_graph(pkg, "pkg")
    assert graph["pkg.ops.nms"] == {"pkg.kernels.nms"}  # `from ..kernels import nms`: the submodule
    assert graph["pkg.ops"] == {"pkg.ops.nms"}
    assert find_cycle(graph) == ["pkg.kernels.nms", "pkg.ops.nms", "pkg.kernels.nms"]
    assert edges_leaving(graph, "pkg.kernels", ("pkg.kernels",)) == [("pkg.kernels.nms", "pkg.ops.nms")]


def test_parent_packages_and_names_from_them_are_not_cycles(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "import numpy as np\nfrom .sub.b import g\n\ndef f():\n    return g()\n",
        "sub/__init__.py": "from . import b\n",
        "sub/b.py": "import pkg.c\n\ndef g():\n    return pkg.c.h()\n",
        "c.py": "def h():\n    return 1\n",
    })
    graph = module_graph(pkg, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": {"pkg.sub.b"},
                     "pkg.sub.b": {"pkg.c"}, "pkg.c": set()}
    assert find_cycle(graph) is None
    graph["pkg.c"].add("pkg")  # c imports a name from the package's __init__: a real cycle
    assert find_cycle(graph) == ["pkg", "pkg.a", "pkg.sub.b", "pkg.c", "pkg"]
