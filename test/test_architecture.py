"""The package's structure, read statically with `ast` (nothing is imported): the onboard runtime stays free of ROS,
the product never depends on the analysis studies, modules import each other without cycles, and modules and
functions stay small enough to read in one sitting.

Every import counts, at module level or inside a function, since a lazy import still ties the two modules together.
Relative imports are resolved against their package; `from . import x` is an arrow to the submodule x when x is
one, and to the package otherwise. Modules outside the package are not part of the graph."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "fusion_prune_ros"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


# ---- reading the package ----------------------------------------------------------------------------------------


def module_files(package: Path) -> dict:
    """Dotted module name -> file, for every module of `package` (a package is named by its __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _nearest_module(name: str, modules: dict) -> str | None:
    """`name` itself if it is a module of the package, else its closest enclosing one (`pkg.mod.func` -> `pkg.mod`);
    None outside the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _relative_base(module: str, path: Path, level: int) -> str:
    """The package a `from .{level} import` in `module` starts from."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    return ".".join(parts[:len(parts) - level + 1])


def _targets(node: ast.AST, module: str, path: Path, modules: dict) -> set:
    """The package's modules that one import statement in `module` loads."""
    if isinstance(node, ast.Import):
        return {_nearest_module(alias.name, modules) for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    source = _relative_base(module, path, node.level) if node.level else ""
    source = ".".join(part for part in (source, node.module) if part)
    # `from pkg import x` loads the submodule pkg.x when there is one, else a name that pkg itself defines
    return {_nearest_module(f"{source}.{alias.name}", modules) for alias in node.names}


def imports_of(module: str, path: Path, modules: dict) -> set:
    """The other modules of the package that `module` imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        found |= _targets(node, module, path, modules)
    return found - {None, module}


def import_graph(package: Path) -> dict:
    """Module -> the set of modules it imports, for every module of `package`."""
    modules = module_files(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict) -> list | None:
    """One import cycle as [a, b, ..., a], or None when the graph has none (depth-first search, in name order so
    the answer is stable)."""
    done, stack = set(), []

    def visit(node: str) -> list | None:
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target in stack:
                return stack[stack.index(target):] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = None if start in done else visit(start)
        if cycle:
            return cycle
    return None


def arrows_into(graph: dict, sources: str | tuple, target: str, exclude: tuple = ()) -> list:
    """'a -> b' for every import from a module named under `sources` (and not under `exclude`) into `target`."""
    def under(name: str, prefixes) -> bool:
        return any(name == p or name.startswith(p + ".") for p in ((prefixes,) if isinstance(prefixes, str) else prefixes))

    return [f"{a} -> {b}" for a in sorted(graph) if under(a, sources) and not under(a, exclude)
            for b in sorted(graph[a]) if under(b, target)]


def long_modules(package: Path, limit: int) -> list:
    """'path (N lines)' for every module of `package` longer than `limit` lines."""
    found = []
    for path in sorted(package.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(package.parent)} ({lines} lines)")
    return found


def long_functions(package: Path, limit: int) -> list:
    """'path:line name (N lines)' for every function or method of `package` longer than `limit` lines, from its
    `def` line to its last line."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


# ---- the package's rules ----------------------------------------------------------------------------------------


def test_the_runtime_never_imports_the_ros_edge():
    """runtime/ is the node without ROS: it runs in replays, benches and tests where rclpy is absent."""
    graph = import_graph(PACKAGE)
    arrows = arrows_into(graph, "fusion_prune_ros.runtime", "fusion_prune_ros.ros")
    assert not arrows, "runtime/ imports ros/:\n" + "\n".join(arrows)
    assert arrows_into(graph, "fusion_prune_ros.ros", "fusion_prune_ros.runtime")  # the reverse arrow is the design


def test_the_product_never_imports_the_analysis_package():
    """Only the command line reaches the studies, so what ships does not depend on how results are reported."""
    graph = import_graph(PACKAGE)
    assert len(graph) > 50
    product_arrows = arrows_into(graph, "fusion_prune_ros", "fusion_prune_ros.analysis",
                                 exclude=("fusion_prune_ros.analysis", "fusion_prune_ros.cli"))
    assert not product_arrows, "the product imports analysis/:\n" + "\n".join(product_arrows)
    # the graph sees the CLI's lazy, relative import of a study
    assert "fusion_prune_ros.analysis.sweep_report" in graph["fusion_prune_ros.cli.prune"]


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_the_line_limit():
    found = long_modules(PACKAGE, MAX_MODULE_LINES)
    assert not found, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(found)


def test_no_function_over_the_line_limit():
    found = long_functions(PACKAGE, MAX_FUNCTION_LINES)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


# ---- the checks themselves, on a package made up for each case --------------------------------------------------


def _package(tmp_path: Path, files: dict) -> Path:
    """A package `pkg` under tmp_path with `files` ({relative path: source}); every folder gets an __init__.py."""
    package = tmp_path / "pkg"
    for relative, source in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(package).parents:
            (package / folder / "__init__.py").touch()
        path.write_text(source)
    return package


def test_relative_and_absolute_imports_resolve_to_modules(tmp_path):
    package = _package(tmp_path, {
        "a/x.py": "from . import y\nfrom .y import VALUE\nfrom .. import b\nimport numpy\n",
        "a/y.py": "VALUE = 1\n",
        "a/__init__.py": "from .y import VALUE\n",
        "b.py": "import pkg.a.y\nfrom pkg.a import VALUE\nfrom pkg.a.y import VALUE as V\n",
    })
    graph = import_graph(package)
    assert graph["pkg.a.x"] == {"pkg.a.y", "pkg.b"}
    assert graph["pkg.a"] == {"pkg.a.y"}
    assert graph["pkg.b"] == {"pkg.a.y", "pkg.a"}  # a name the package defines is an arrow to the package


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = _package(tmp_path, {
        "core.py": "from .edge import run\n",
        "edge.py": "def run():\n    from .helpers import util\n",
        "helpers.py": "def util():\n    from . import core\n",
        "leaf.py": "from . import core\n",
    })
    assert find_cycle(import_graph(package)) == ["pkg.core", "pkg.edge", "pkg.helpers", "pkg.core"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_forbidden_arrows_are_named(tmp_path):
    package = _package(tmp_path, {
        "runtime/core.py": "from ..ros import node\n",
        "ros/node.py": "from ..runtime.core import *\n",
        "cli/main.py": "from ..analysis import report\n",
        "analysis/report.py": "",
        "model.py": "import pkg.analysis.report\n",
    })
    graph = import_graph(package)
    assert arrows_into(graph, "pkg.runtime", "pkg.ros") == ["pkg.runtime.core -> pkg.ros.node"]
    assert arrows_into(graph, "pkg", "pkg.analysis", exclude=("pkg.analysis", "pkg.cli")) == [
        "pkg.model -> pkg.analysis.report"]


def _function(name: str, lines: int, indent: str = "") -> str:
    """The source of a function `lines` long, its `def` line included."""
    return f"{indent}def {name}():\n" + "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))


def test_long_modules_and_functions_are_named(tmp_path):
    method = "class C:\n" + _function("too_long", MAX_FUNCTION_LINES + 1, indent="    ")
    package = _package(tmp_path, {
        "fits.py": _function("fits", MAX_FUNCTION_LINES) + "#\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES),
        "long.py": method + "#\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES - 1),
    })
    assert long_functions(package, MAX_FUNCTION_LINES) == [f"pkg/long.py:2 too_long ({MAX_FUNCTION_LINES + 1} lines)"]
    assert long_modules(package, MAX_MODULE_LINES) == [f"pkg/long.py ({MAX_MODULE_LINES + 1} lines)"]
