"""The package's shape (docs/architecture.md, "The numbers"): an import graph between its modules with no cycle and
no import from a lower layer up to a higher one, and files their size (each paper scheme file <= 150 lines,
RandomMask <= 20, AnatoMask <= 80, no file over 350)."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nnunet_anatomask")
PACKAGE = "nnunet_anatomask"
# Low to high; a module is in the layer of its longest matching prefix. Imports go down or stay in a layer.
LAYERS = [
    ("errors", "knobs", "checkpoint_io", "progress", "plotting", "reconstruction_plot", "example_data", "example_ct",
     "environment", "run_lock", "recipes"),
    ("pretraining.grid", "pretraining.losses", "pretraining.masking", "pretraining.clustering",
     "pretraining.schedules", "pretraining.distributed", "pretraining.views", "pretraining.teacher",
     "pretraining"),
    ("pretraining.backbones",),
    ("pretraining.schemes", "interop", "transfer"),
    ("trainers", "unlabelled"),
    ("cli", "export", "benchmark", "evaluation", "evaluate", "run_summary", "gpu_check", "gpu_report", "_ext_trainers"),
]
SCHEME_FILES = {"pretraining/schemes/random_mask.py": 20, "pretraining/schemes/anatomask.py": 80,
                "pretraining/schemes/glmae.py": 150, "pretraining/schemes/selfmed_hpm/scheme.py": 150,
                "pretraining/schemes/amlp/scheme.py": 150}
MAX_LINES = 350


def modules() -> dict[str, str]:
    """Dotted module name (without the package) -> file, for every .py file of the package."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for file in files:
            if file.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, file), ROOT)[:-3].replace(os.sep, ".")
                name = relative[: -len(".__init__")] if relative.endswith("__init__") else relative
                found[name] = os.path.join(folder, file)
    return found


def imports_of(name: str, path: str, known: dict) -> set[str]:
    """The package modules ``name`` imports (anywhere in the file): ``import a.b`` counts as a.b; ``from a import
    b`` as a.b where that is a module, and as a (its ``__init__`` runs and is read; ``from trainers import
    stage1_ddp`` inside a module that ``trainers/__init__`` imports is a re-entry)."""
    tree = ast.parse(open(path).read())
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = (PACKAGE + "." + name).split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names
                                if f"{base}.{alias.name}"[len(PACKAGE) + 1:] in known]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                module = target[len(PACKAGE) + 1:]
                while module and module not in known:
                    module = module.rpartition(".")[0]
                if module and module != name:
                    found.add(module)
    return found


def layer(name: str) -> int:
    matches = [(len(prefix), i) for i, group in enumerate(LAYERS) for prefix in group
               if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} is in no layer: add it to LAYERS in {__file__} and docs/architecture.md"
    return max(matches)[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_no_module_imports_up_from_a_lower_layer(graph):
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})" for a, targets in graph.items()
              for b in targets if layer(b) > layer(a)]
    assert upward == []


def test_the_import_graph_has_no_cycle(graph):
    """Depth-first search for a back edge; the cycle found is named."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_graph_sees_imports_inside_functions(graph):
    """The checks cover lazy imports too (cli looks the registry up inside a function)."""
    assert "trainers.registry" in graph["cli"]
    assert "trainers.stage1_ddp" in graph["trainers.stage1"]


def test_files_are_their_size():
    counts = {os.path.relpath(path, ROOT): sum(1 for _ in open(path)) for path in modules().values()}
    too_long = {f: n for f, n in counts.items() if n > MAX_LINES}
    assert too_long == {}
    schemes = {f: counts[f] for f in SCHEME_FILES}
    assert all(schemes[f] <= limit for f, limit in SCHEME_FILES.items()), schemes
