"""The import graph of nnunet-ext points one way (docs/architecture.md): a module imports only modules of its own
group or of a lower layer, and no set of modules imports itself in a circle. Every ``import`` counts, the ones inside
functions too: a lazy import is still a dependency."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {"nnunet_ext": "nnunet_ext", "architectures": "nnunet_ext.architectures",
                "trainers": "nnunet_ext.trainers", "plans": "nnunet_ext.plans"}

#: layer of each group (a module belongs to the longest group name that prefixes it); an import from one group to
#: another must go to a strictly lower layer
LAYERS = {
    "nnunet_ext": 0, "nnunet_ext.errors": 0,                          # the package's constants, the user error
    "nnunet_ext.architectures": 1, "nnunet_ext.boxes": 1,               # networks, the one box rule
    "nnunet_ext.plans": 2,                                             # plans synthesiser, planner, memory fit
    "nnunet_ext.trainers": 3,                                          # nnU-Net trainers
    "nnunet_ext.lookup": 4,                                            # how nnU-Net finds our trainers
    "nnunet_ext.checks": 5,                                            # input checks
    "nnunet_ext.evaluation": 6,                                        # metrics
    "nnunet_ext.dicom": 6,                                             # DICOM series in, DICOM SEG out
    "nnunet_ext.data": 7, "nnunet_ext.inference": 7, "nnunet_ext.c2f": 7, "nnunet_ext.planning": 7,
    "nnunet_ext.benchmark": 8,                                         # compares everything below
    "nnunet_ext.grid": 8,                                              # the benchmark grid on SLURM / locally
    "nnunet_ext.commands": 9, "nnunet_ext.core_commands": 9,            # the command table
    "nnunet_ext.cli": 10, "nnunet_ext._readme": 10, "nnunet_ext.ext_trainers": 10,   # entry points
}


def _module_of(path: Path) -> str:
    rel = path.relative_to(REPO)
    parts = [PACKAGE_DIRS[rel.parts[0]].replace(".", "/"), *rel.parts[1:]]
    name = "/".join(parts)[: -len(".py")].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


FILES = sorted(p for d in PACKAGE_DIRS for p in (REPO / d).rglob("*.py"))
MODULES = {_module_of(p): p for p in FILES}


def _group(module: str) -> str:
    best = max((g for g in LAYERS if module == g or module.startswith(g + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer of LAYERS (tests/unit/test_layering.py): add it")
    return best


def _imports(module: str, source: str = None, is_package: bool = None):
    """(line, imported module) for every import of ``module`` (its file, or ``source``) that names a module of
    nnunet-ext."""
    if source is None:
        source, is_package = MODULES[module].read_text(), MODULES[module].name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import nnunet_ext.x.y` -> the longest module it names
                name = name.rpartition(".")[0]
            if name and name != module:
                yield node.lineno, name


GRAPH = {m: sorted(set(t for _, t in _imports(m))) for m in MODULES}


def test_every_module_is_in_a_layer():
    for m in MODULES:
        _group(m)


def _upward(module, imports):
    g = _group(module)
    return [f"line {line}: {module} ({LAYERS[g]}) imports {t} ({LAYERS[_group(t)]})"
            for line, t in imports if _group(t) != g and LAYERS[_group(t)] >= LAYERS[g]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    bad = _upward(module, _imports(module))
    assert not bad, bad


def _circles(graph):
    """Tarjan's strongly connected components; a component of two or more modules is a circle."""
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle():
    circles = _circles(GRAPH)
    assert not circles, circles


def test_the_rules_can_fail():
    """The checks see an upward import (also a lazy, relative one) and a circle (stand-ins, not files)."""
    lazy = "def f():\n    from ..benchmark import profile\n    from . import _fast\n"
    found = list(_imports("nnunet_ext.architectures.x", lazy, is_package=False))
    assert [t for _, t in found] == ["nnunet_ext.benchmark.profile", "nnunet_ext.architectures._fast"]
    assert _upward("nnunet_ext.architectures.x", found) == [
        "line 2: nnunet_ext.architectures.x (1) imports nnunet_ext.benchmark.profile (8)"]
    assert _circles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
