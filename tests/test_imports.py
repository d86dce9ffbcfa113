"""Import structure: light paths load no torch, the library never imports its CLI, no file imports itself back.

Which way imports go is described in ARCHITECTURE.md (cli → run → processors → pipeline →
read/batch/infer/write → models). These checks read the source with :mod:`ast` or run a fresh
interpreter. Both the CLI check and the cycle check count every import statement of a module:
those inside functions (a lazy import is still a dependency, and a circle closed by one is a
circle of the design) and those under ``if TYPE_CHECKING:``. An edge goes to the module a
statement names (``from .run import x`` → ``coffea_lorentz.run``; ``from .run import chunks`` →
``coffea_lorentz.run.chunks``), not to the packages Python imports on the way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coffea_lorentz"


def _loads_torch(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter leaves ``torch`` in ``sys.modules``."""
    probe = f"{code}\nimport sys\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize(
    "code",
    [
        "import coffea_lorentz.infer.triton_client",
        "from coffea_lorentz.infer import BackendSpec, process_backend\n"
        "BackendSpec.make('lloca', kind='triton', url='127.0.0.1:8001').create()",
        "import coffea_lorentz.reweight.weights",
        "from coffea_lorentz.reweight import weights_from_probability, event_weights, reweighter_name, JetSample",
        "from coffea_lorentz.processors.reweight import ReweighterSpec, ReweightProcessor",
        "from coffea_lorentz import Reweighter\nReweighter('fsr', server='127.0.0.1:8001')",
    ],
    ids=["triton_client", "triton_spec", "reweight_weights", "reweight_package_light_names", "reweight_processor",
         "reweighter_triton"],
)
def test_light_paths_import_no_torch(code):
    assert not _loads_torch(code), f"{code!r} imported torch"


def test_torch_backend_is_still_reachable_from_the_package():
    assert _loads_torch("from coffea_lorentz.infer import TorchBackend")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name → (file, is a package ``__init__``) of every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _import_nodes(tree: ast.AST, *, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements of ``tree``; with ``lazy`` False, not those inside functions (they run later)."""
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif lazy or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _imports(name: str, path: Path, is_package: bool, modules: dict, *, lazy: bool = True) -> set[str]:
    """The package's modules that ``name`` imports (the closest existing module of each); with
    ``lazy`` False only those imported when ``name`` itself is."""
    found = set()
    for node in _import_nodes(ast.parse(path.read_text()), lazy=lazy):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [
                f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found


def test_only_the_cli_imports_the_cli():
    modules = _modules()
    offenders = {
        name: sorted(
            target for target in _imports(name, path, is_package, modules) if target.startswith("coffea_lorentz.cli")
        )
        for name, (path, is_package) in modules.items()
        if not name.startswith("coffea_lorentz.cli")
    }
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def _graph(*, lazy: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, is_package, modules, lazy=lazy) for name, (path, is_package) in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each back edge of a depth-first search of ``graph`` (none: it is acyclic)."""
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycles():
    """No circle between the package's modules, counting imports inside functions and for type checking."""
    assert _cycles(_graph(lazy=True)) == []


def test_the_cycle_check_finds_a_cycle():
    """The check above fails on a circle, including one closed by a function-level import."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    graph = _graph(lazy=True)
    graph["coffea_lorentz.batch"] = graph["coffea_lorentz.batch"] | {"coffea_lorentz.pipeline"}
    assert any("coffea_lorentz.pipeline" in cycle and "coffea_lorentz.batch" in cycle for cycle in _cycles(graph))


def test_the_processor_needs_nothing_of_the_run_model():
    """The coffea processors, the pipeline and the analysis objects import no module of ``coffea_lorentz.run``."""
    graph = _graph(lazy=True)
    below_run = [name for name in graph if name.startswith(("coffea_lorentz.processors", "coffea_lorentz.pipeline",
                                                            "coffea_lorentz.tagger", "coffea_lorentz.reweighter",
                                                            "coffea_lorentz.chunk", "coffea_lorentz.model_tagger"))]
    reached, pending = set(), list(below_run)
    while pending:
        for target in graph[pending.pop()]:
            if target not in reached:
                reached.add(target)
                pending.append(target)
    assert sorted(name for name in reached if name == "coffea_lorentz.run" or name.startswith("coffea_lorentz.run.")) == []


def test_the_former_runner_module_is_gone():
    assert not (PACKAGE / "runner.py").exists()
