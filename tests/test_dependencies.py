"""setup.py's install_requires names exactly the distributions the package imports (docs/installation.md)."""
import ast
import importlib.metadata
import os
import re
import sys

from packaging.requirements import Requirement  # a dependency of pytest

from tests.source_imports import OWN_TOP_LEVEL, ROOT, absolute_imports, source_files


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_requires() -> dict[str, Requirement]:
    """{distribution: requirement} as setup.py declares it (read from its source, not from an install)."""
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    setup_call = next(node for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    requirements = ast.literal_eval(next(k.value for k in setup_call.keywords if k.arg == "install_requires"))
    return {normalised(r.name): r for r in map(Requirement, requirements)}


def extras_require() -> dict[str, Requirement]:
    """{distribution: requirement} of every optional extra setup.py declares (hub, evaluation, test...)."""
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    setup_call = next(node for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    extras = ast.literal_eval(next(k.value for k in setup_call.keywords if k.arg == "extras_require"))
    return {normalised(r.name): r for group in extras.values() for r in map(Requirement, group)}


def module_level_imports() -> set[str]:
    """'path:line' of every import statement at the top level of a module (not inside a function)."""
    found = set()
    for path in source_files():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        found |= {f"{path}:{node.lineno}" for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
    return found


def imported_distributions() -> dict[str, list[str]]:
    """{distribution: [where it is imported]} for every third-party import of the package."""
    providers = importlib.metadata.packages_distributions()
    found: dict[str, list[str]] = {}
    for imp in absolute_imports():
        if imp.top_level in sys.stdlib_module_names or imp.top_level in OWN_TOP_LEVEL:
            continue
        names = providers.get(imp.top_level)
        assert names, f"{imp.where}: no installed distribution provides '{imp.top_level}'"
        found.setdefault(normalised(names[0]), []).append(imp.where)
    return found


def test_install_requires_matches_imports():
    """Mutations caught: an import of an undeclared distribution (e.g. scipy dropped from install_requires) and a
    declared distribution that nothing imports (e.g. acvl-utils, which comes with nnunetv2)."""
    declared, imported, optional = install_requires(), imported_distributions(), extras_require()
    undeclared = {d: where for d, where in imported.items() if d not in declared and d not in optional}
    unused = sorted(set(declared) - set(imported))
    assert not undeclared, f"imported but not in setup.py's install_requires: {undeclared}. Fix: declare them."
    assert not unused, f"in setup.py's install_requires but never imported: {unused}. Fix: remove them."


def test_nnunet_and_internals_users_are_pinned():
    """The distributions whose internals we rely on (docs/nnunet_internals.md) are pinned to the tested range;
    torch is not pinned (users bring their CUDA build; constraints.txt pins CI's CPU pair)."""
    declared = install_requires()
    for dist in ("nnunetv2", "dynamic-network-architectures", "batchgeneratorsv2", "batchgenerators"):
        operators = sorted(spec.operator for spec in declared[dist].specifier)
        assert operators == ["<", ">="], f"{dist} must be pinned to the tested range (>=tested,<next): {declared[dist]}"
        installed = importlib.metadata.version(dist)
        assert declared[dist].specifier.contains(installed), f"installed {dist} {installed} is outside {declared[dist]}"
    assert not declared["torch"].specifier, "torch must stay unpinned (constraints.txt pins CI's pair)"


def test_optional_distributions_are_imported_where_they_are_used():
    """A distribution of an extra only (huggingface_hub for --push) is imported inside the function that needs it,
    so the package imports without it. Mutation caught: `import huggingface_hub` at the top of interop/share.py."""
    declared, optional = install_requires(), extras_require()
    top_level = module_level_imports()
    for dist, where in imported_distributions().items():
        if dist in optional and dist not in declared:
            assert not top_level & set(where), f"{dist} (an extra) is imported at module level: {where}"
