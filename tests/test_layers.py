"""The module layers hold: no import cycle, and the pure layers never reach the run directory.

The import graph is read from the source (`ast`), counting every import, also those deferred
into functions (a deferred import is still a dependency: it only hides a cycle from Python's
import machinery); imports under `if TYPE_CHECKING:` are type hints and are not counted.
docs/architecture.md describes the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vaelab

ROOT = Path(vaelab.__file__).parent

# Layers that are functions of tensors, codes and factors: they must not load or write runs.
PURE = ("vaelab.data", "vaelab.models", "vaelab.objectives", "vaelab.metrics", "vaelab.viz")
# What they may not import: the run directory and everything above it.
ABOVE_PURE = ("vaelab.runs", "vaelab.evaluation", "vaelab.plotting", "vaelab.engine",
              "vaelab.workflow", "vaelab.experiments", "vaelab.sweep", "vaelab.commands",
              "vaelab.cli", "vaelab.disvae_import", "vaelab.factory")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    return skipped


def import_graph() -> dict[str, set[str]]:
    """{module: the vaelab modules it imports}, a package counting as its `__init__`."""
    modules = _modules()

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from pkg import sub` imports the submodule; `from pkg import name`, the package
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            for target in targets:
                if target == "vaelab" or target.startswith("vaelab."):
                    found = owner(target)
                    if found and found != name:
                        graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_sees_deferred_imports():
    graph = import_graph()
    # evaluate_run imports the run loader at module level, the workflow imports the engine in
    # a function: both are edges
    assert "vaelab.runs" in graph["vaelab.evaluation"]
    assert "vaelab.engine" in graph["vaelab.workflow"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_pure_layers_never_import_the_run_directory_or_above():
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items() if _in(m, PURE)
                 for t in targets if _in(t, ABOVE_PURE) or t == "vaelab")
    assert bad == []


def test_the_ground_floor_imports_only_the_errors():
    assert import_graph()["vaelab.io"] <= {"vaelab.errors"}


def test_a_planted_cycle_and_a_planted_layer_breach_are_seen():
    graph = import_graph()
    graph["vaelab.runs"].add("vaelab.evaluation")  # evaluation imports runs: a cycle
    assert any({"vaelab.evaluation", "vaelab.runs"} <= set(c) for c in cycles(graph))


def test_the_engine_chooses_no_pictures_scores_or_loggers():
    # the plug-ins (pictures, scores during training, loggers) are callbacks from vaelab.loggers
    targets = import_graph()["vaelab.engine"]
    assert not any(_in(t, ("vaelab.viz", "vaelab.metrics", "vaelab.evaluation", "vaelab.plotting"))
                   for t in targets), sorted(targets)


def test_the_engine_is_the_loop():
    lines = (ROOT / "engine.py").read_text().splitlines()
    assert len(lines) <= 400
    functions = [line.split("(")[0][4:] for line in lines if line.startswith("def ")]
    assert functions[0] == "fit"
