"""The tools in scripts/ change no production code from outside (issue 24: the runner offers callbacks and settings,
and the scripts use them): no assignment to, or deletion of, an attribute of a module or class imported from our
package or nnU-Net, and no setattr/delattr at all. Read from each script's syntax tree; nothing is run."""
import ast
import glob
import os

import pytest

SCRIPTS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                                        "*.py")))
PRODUCTION = ("nnunet_anatomask", "nnunetv2")


def imported_names(tree: ast.AST) -> set[str]:
    """Names the script binds to production modules or their members (``from nnunet_anatomask import cli``,
    ``import nnunetv2.x as y``, ``import nnunet_anatomask``), anywhere in the file."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in PRODUCTION:
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names
                      if alias.name.split(".")[0] in PRODUCTION}
    return names


def root(node: ast.AST) -> str:
    """``a`` of ``a.b.c``; '' where the chain starts elsewhere (a call, a subscript)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def patches(source: str) -> list[str]:
    """'line N: what' for every attribute of an imported production name the script assigns or deletes, and every
    setattr/delattr call."""
    tree = ast.parse(source)
    production = imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            flat = [t for target in targets for t in ast.walk(target) if isinstance(t, ast.Attribute)]
            found += [f"line {node.lineno}: {ast.unparse(t)}" for t in flat
                      if isinstance(t.ctx, (ast.Store, ast.Del)) and root(t) in production]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_scripts_patch_no_production_code(path):
    with open(path) as f:
        found = patches(f.read())
    assert not found, (f"{os.path.basename(path)} changes production code from outside: {found}. Fix: use the "
                       "runner's callbacks (Stage1Runner.add_callback) or a setting (nnUNet_anatomask_*) instead")


def test_the_check_finds_each_kind_of_patch():
    """What the scripts did before issue 24's item 6: a class method and a module function replaced by lambdas,
    methods wrapped by name in a loop; and what stays allowed: attributes of a script's own objects."""
    assert len(patches("from nnunet_anatomask.pretraining.backbones import primus\n"
                       "primus.PrimusBackbone.recipe = lambda self, own: own\n")) == 1
    assert len(patches("from nnunet_anatomask import cli\ncli.device_from_arg = print\n")) == 1
    assert len(patches("import nnunet_anatomask.cli\nnnunet_anatomask.cli.x, y = 1, 2\n")) == 1
    assert len(patches("from nnunetv2.run import run_training as rt\ndel rt.run_training\n")) == 1
    assert len(patches("for cls in (int,):\n    setattr(cls, 'on_run_start', print)\n")) == 1
    assert patches("from nnunet_anatomask import cli\nclass A:\n    def __init__(self):\n        self.labels = 1\n"
                   "args = cli.parse_args([])\nargs.fold = 0\n") == []
