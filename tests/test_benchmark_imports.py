"""Every `vaelab` import in benchmarks/ resolves. The scripts are run by hand, not by the suite,
so a module moved by a refactor broke `reduced_study.py`'s report only after a 36-run study had
trained; this check parses each script (nothing is run) and imports what it names."""

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _vaelab_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for `from vaelab... import name`, (module, None) for `import vaelab...`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vaelab":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "vaelab"]
    return found


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_vaelab_imports_resolve(path):
    for module_name, name in _vaelab_imports(path):
        module = importlib.import_module(module_name)
        if name is not None and not hasattr(module, name):
            importlib.import_module(f"{module_name}.{name}")  # a submodule, or ImportError


def test_the_check_sees_a_moved_module(tmp_path):
    script = tmp_path / "moved.py"
    script.write_text("def f():\n    from vaelab.viz.sweep_report import rank_correlations\n")
    ((module, name),) = _vaelab_imports(script)
    with pytest.raises(ImportError):
        importlib.import_module(module)
