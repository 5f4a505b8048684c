"""What the package's own source imports, read with `ast` (nothing is imported): for the dependency and
nnU-Net-internals tests."""
import ast
import glob
import os
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN_TOP_LEVEL = ("nnunet_anatomask", "nnunet_anatomask_hook")


@dataclass(frozen=True)
class Import:
    where: str  # "nnunet_anatomask/trainers/stage2.py:14"
    module: str  # "nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup"
    names: tuple[str, ...]  # ("nnUNetTrainer_warmup",); () for `import module`

    @property
    def top_level(self) -> str:
        return self.module.split(".")[0]


def source_files() -> list[str]:
    """The package's modules and the start-up hook, relative to the repository root."""
    files = glob.glob(os.path.join(ROOT, "nnunet_anatomask", "**", "*.py"), recursive=True)
    files.append(os.path.join(ROOT, "nnunet_anatomask_hook.py"))
    return sorted(os.path.relpath(f, ROOT) for f in files)


def absolute_imports() -> list[Import]:
    """Every absolute import statement of the package (also those inside functions)."""
    found = []
    for path in source_files():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(f"{path}:{node.lineno}", alias.name, ()) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append(Import(f"{path}:{node.lineno}", node.module, tuple(a.name for a in node.names)))
    return found
