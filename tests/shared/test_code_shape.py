"""The shape of the code: one direction of imports, small modules, thin flows, clean lint.

The import graph is read from the source (every import, function-local ones included), with
each folder mapped to its installed name (`flows/` is `partnerflow.flows`, ...).
"""

from __future__ import annotations

import ast
import graphlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"partnerflow": "partnerflow", "flows": "partnerflow.flows", "tasks": "partnerflow.tasks",
            "models": "partnerflow.models", "deployments": "partnerflow.deployments",
            "providers": "partnerflow.providers", "web": "partnerflow.web", "migrations": "partnerflow.migrations"}

# Top to bottom: a module may import only from its own layer's package or the layers below it.
LAYERS = [
    ["partnerflow.cli"],
    ["partnerflow.demo"],
    ["partnerflow.stack", "partnerflow.runner"],
    ["partnerflow.automations"],
    ["partnerflow.deployments"],
    ["partnerflow.flows", "partnerflow.web"],
    ["partnerflow.tasks", "partnerflow.status", "partnerflow.dbtools", "partnerflow.migrations"],
    ["partnerflow.models"],
    ["partnerflow.secrets"],
    ["partnerflow.settings"],
    ["partnerflow.providers"],
]
MAX_MODULE_LINES = 400
MAX_FLOW_LINES = 160


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    rest = [p for p in parts[1:] if p != "__init__"]
    return ".".join([PACKAGES[parts[0]], *rest])


def production_files() -> dict[str, Path]:
    found = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "testing" in path.relative_to(ROOT).parts or "versions" in path.parts:
                continue
            found[module_name(path)] = path
    return found


def imports_of(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module of ours, line, function-local?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("partnerflow"):
            targets = [f"{node.module}.{a.name}" for a in node.names]
            names = [t if t in known else node.module for t in targets]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("partnerflow")]
        else:
            continue
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            found.append((name, node.lineno, id(node) not in top_level))
    return found


FILES = production_files()
GRAPH = {mod: imports_of(path, set(FILES)) for mod, path in FILES.items()}


def layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return index
    return None


def package_of(module: str) -> str | None:
    index = layer_of(module)
    if index is None:
        return None
    return next(p for p in LAYERS[index] if module == p or module.startswith(p + "."))


def test_imports_go_one_way():
    wrong = []
    for module, imports in GRAPH.items():
        mine = layer_of(module)
        for target, line, _ in imports:
            theirs = layer_of(target)
            if mine is None or theirs is None or package_of(module) == package_of(target):
                continue
            if theirs <= mine:
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_providers_import_only_providers():
    wrong = [f"{module}:{line} imports {target}" for module, imports in GRAPH.items()
             if module.startswith("partnerflow.providers") for target, line, _ in imports
             if not target.startswith("partnerflow.providers")]
    assert wrong == []


def test_provider_capabilities_stand_alone():
    capabilities = ("email", "esign", "payout")
    wrong = []
    for module, imports in GRAPH.items():
        mine = next((c for c in capabilities if module.startswith(f"partnerflow.providers.{c}")), None)
        for target, line, _ in imports:
            theirs = next((c for c in capabilities if target.startswith(f"partnerflow.providers.{c}")), None)
            if mine and theirs and mine != theirs:
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_no_import_cycles():
    graph = {module: {t for t, _, _ in imports if t != module} for module, imports in GRAPH.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of meaning.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not (t.startswith(module + ".") and FILES[module].name == "__init__.py")}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_function_local_imports_say_why():
    """A function-local import of ours has its reason beside it (or, for a whole module, in one
    top-level comment starting "# Function-local imports:")."""
    silent = []
    for module, imports in GRAPH.items():
        lines = FILES[module].read_text().splitlines()
        if any(line.startswith("# Function-local imports:") for line in lines):
            continue
        for _, line, local in imports:
            if local and "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#"):
                silent.append(f"{module}:{line}")
    assert sorted(set(silent)) == []


TEST_ONLY = ("pytest", "hypothesis", "aiosmtpd", "time_machine", "pytest_httpserver", "werkzeug")


def test_production_code_never_imports_test_only_packages():
    """deptry cannot tell tests/ from production code, so the test extra is checked here."""
    wrong = []
    for module, path in FILES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            wrong += [f"{module}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in TEST_ONLY]
    assert wrong == []


def test_production_code_never_imports_the_fakes():
    assert [m for m, imports in GRAPH.items() for t, _, _ in imports if t.startswith("partnerflow.testing")] == []


def test_modules_are_small_and_flows_thin():
    big = [f"{m}: {n} lines" for m, p in FILES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert big == []
    fat_flows = [f"{m}: {n} lines" for m, p in FILES.items()
                 if m.startswith("partnerflow.flows.") and (n := len(p.read_text().splitlines())) > MAX_FLOW_LINES]
    assert fat_flows == []


@pytest.mark.parametrize("module", sorted(m for m in FILES if m.startswith("partnerflow.flows.")))
def test_flows_hold_no_sql(module):
    source = FILES[module].read_text()
    for word in ("session_scope", "select(", "update(", "text(", "session.exec"):
        assert word not in source, f"{module} uses {word}: SQL belongs in the stage's tasks"


def test_every_stage_is_found_by_its_name():
    stages = ("discovery", "outreach", "contracting", "onboarding", "compliance", "payouts")
    for stage in stages:
        assert (ROOT / "flows" / f"{stage}.py").exists()
        assert (ROOT / "tasks" / stage).is_dir()
        assert (ROOT / "templates" / stage).is_dir()


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed in this environment; `make test` installs it")
    return found


def test_ruff_passes():
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_import_is_a_declared_dependency():
    result = subprocess.run([_tool("deptry"), "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
