"""Trainer registration with nnU-Net v2, tested the way a user meets it.

Everything runs in subprocesses started from a CLEAN environment (no nnUNet_extTrainer, no PYTHON* vars,
empty nnUNet_raw / nnUNet_preprocessed / nnUNet_results, cwd outside the repo), so the only thing that can
register our trainers is the installed ``nnunet_anatomask.pth`` -> ``nnunet_anatomask_hook``.

(a) the current environment (``pip install -e .`` by scripts/test.sh) through nnU-Net's real console scripts;
(b) a throwaway venv layered on the current one, into which the package is really installed from a built
    wheel (``pip install .``) and as an editable wheel (``pip install -e .``), then uninstalled;
(c) the hook keeps interpreter start-up free of torch / our package, appends, and never raises.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINER = "nnUNetTrainerRandomMask"
EXT_MODULE = "nnunet_anatomask_trainers.py"
BIN = Path(sys.executable).parent  # the venv's bin dir (do not resolve: that would leave the venv)

FIND_TRAINER = (
    "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
    f"c = f({TRAINER!r})\n"
    "print('TRAINER_MODULE=' + c.__module__)\n"
)
PRINT_EXT = "import os; print('EXT=' + str(os.environ.get('nnUNet_extTrainer')))"


def clean_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "nnUNet_", "__PYVENV"))}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        env[name] = str(d)
    env.update(extra)
    return env


def run(cmd, tmp_path: Path, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=tmp_path, env=env if env is not None else clean_env(tmp_path),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr


def value(p: subprocess.CompletedProcess, key: str) -> str:
    for line in p.stdout.splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1:]
    raise AssertionError(f"no {key}= line in output (rc={p.returncode}):\n{out(p)}")


def installed_ext_folder(python, tmp_path: Path) -> str:
    """The _ext_trainers folder of the package as that interpreter imports it."""
    p = run([python, "-c", "import os, nnunet_anatomask as m; "
             "print('PKG=' + os.path.join(os.path.dirname(m.__file__), '_ext_trainers'))"], tmp_path)
    assert p.returncode == 0, f"nnunet_anatomask is not importable from {python}; run `pip install -e .`:\n{out(p)}"
    return value(p, "PKG")


# --------------------------------------------------------------------------------------------------------------
# (a) the current environment, through nnU-Net's console scripts
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ext_folder(tmp_path_factory) -> str:
    return installed_ext_folder(sys.executable, tmp_path_factory.mktemp("pkg"))


def test_hook_sets_env_var_at_startup(tmp_path, ext_folder):
    p = run([sys.executable, "-c", PRINT_EXT], tmp_path)
    assert p.returncode == 0, out(p)
    assert value(p, "EXT") == ext_folder
    assert os.path.isfile(os.path.join(ext_folder, EXT_MODULE))
    assert not os.path.exists(os.path.join(ext_folder, "__init__.py")), "the re-export folder must stay flat"


def test_pth_is_in_record_so_uninstall_removes_it(tmp_path):
    p = run([sys.executable, "-c",
             "import importlib.metadata as md; d = md.distribution('nnunet-anatomask'); "
             "print('FILES=' + ','.join(str(f) for f in d.files))"], tmp_path)
    assert p.returncode == 0, out(p)
    assert "nnunet_anatomask.pth" in value(p, "FILES").split(",")


@pytest.mark.slow  # the default suite's real-CLI runs find our trainers from a clean environment too
def test_recursive_find_trainer_class_by_name(tmp_path):
    p = run([sys.executable, "-c", FIND_TRAINER], tmp_path)
    assert p.returncode == 0, out(p)
    assert value(p, "TRAINER_MODULE").startswith("nnunet_anatomask."), out(p)


def _assert_trainer_found(p: subprocess.CompletedProcess):
    text = out(p)
    assert f"Using trainer '{TRAINER}'" in text, text
    assert "Could not find requested nnunet trainer" not in text, text


@pytest.mark.slow  # the default suite's real-CLI runs find our trainers from a clean environment too
def test_nnUNetv2_train_finds_trainer(tmp_path):
    # Real console script. It looks the trainer up first (run_training.get_trainer_from_args), then fails on
    # the missing dataset 999: that failure is expected.
    p = run([BIN / "nnUNetv2_train", "999", "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"], tmp_path)
    _assert_trainer_found(p)
    assert p.returncode != 0 and "999" in out(p), out(p)


@pytest.mark.slow  # the default suite's real-CLI runs find our trainers from a clean environment too
def test_nnUNetv2_predict_finds_trainer(tmp_path):
    # nnUNetv2_predict reads the trainer name from fold_X/checkpoint_final.pth of the results folder and looks
    # it up by name (nnUNetPredictor.initialize_from_trained_model_folder). A stub results folder with a tiny
    # checkpoint that names our trainer gets it exactly there; it then fails building the network from the
    # stub plans (expected).
    env = clean_env(tmp_path)
    model = Path(env["nnUNet_results"]) / "Dataset999_Reg" / f"{TRAINER}__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": 1,
         "file_ending": ".nii.gz"}))
    (model / "plans.json").write_text(json.dumps(
        {"dataset_name": "Dataset999_Reg", "plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {"architecture": {}}}}))
    import torch  # only here: the test process itself may import torch

    torch.save({"trainer_name": TRAINER, "init_args": {"configuration": "3d_fullres"}, "network_weights": {}},
               model / "fold_0" / "checkpoint_final.pth")
    (tmp_path / "in").mkdir()
    p = run([BIN / "nnUNetv2_predict", "-i", tmp_path / "in", "-o", tmp_path / "out", "-d", "999",
             "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-device", "cpu"], tmp_path, env=env)
    _assert_trainer_found(p)


@pytest.mark.slow  # the default suite's real-CLI runs find our trainers from a clean environment too
def test_nnUNetv2_find_best_configuration_accepts_trainer(tmp_path):
    # nnU-Net 2.8.1's find_best_configuration never imports a trainer class: -tr only names the results
    # folders <trainer>__<plans>__<config>. What is exercised: the real console script starts in this
    # environment with the hook active and accepts our trainer name, failing only on the missing dataset
    # (not on a trainer lookup). The lookup it would need is the same recursive_find_trainer_class_by_name,
    # run here from that console script's own interpreter (its shebang), as the check that matters.
    p = run([BIN / "nnUNetv2_find_best_configuration", "999", "-c", "3d_fullres", "-tr", TRAINER], tmp_path)
    text = out(p)
    assert p.returncode != 0 and "999" in text, text
    assert "Could not find requested nnunet trainer" not in text, text

    shebang = (BIN / "nnUNetv2_find_best_configuration").read_text().splitlines()[0]
    assert shebang.startswith("#!")
    script_python = shebang[2:].strip().split()[0]
    p = run([script_python, "-c", FIND_TRAINER], tmp_path)
    assert p.returncode == 0, out(p)
    assert value(p, "TRAINER_MODULE").startswith("nnunet_anatomask."), out(p)


# --------------------------------------------------------------------------------------------------------------
# (b) real installs into a throwaway venv layered on the current one, then uninstall
# --------------------------------------------------------------------------------------------------------------
def _layered_venv(tmp_path: Path) -> Path:
    """A pip-less venv T that sees the current venv's packages, except any nnunet-anatomask install.

    T's site-packages gets a .pth with one plain path line pointing at a "view" folder of symlinks to every
    entry of the current site-packages except ours (.pth path lines do not run that folder's own .pth files,
    so the current install's hook never fires in T). T runs the current venv's pip as `T/bin/python -m pip`.
    """
    import importlib.util
    import sysconfig

    venv_dir = tmp_path / "T"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True,
                   stdin=subprocess.DEVNULL, timeout=120)
    # the folders holding what T needs (normally all the one site-packages of the current venv)
    sources = [Path(sysconfig.get_paths()["purelib"])]
    for mod in ("pip", "setuptools", "torch", "nnunetv2"):
        sources.append(Path(importlib.util.find_spec(mod).origin).parent.parent)
    view = tmp_path / "main_site_view"
    view.mkdir()
    for source in dict.fromkeys(sources):
        for entry in source.iterdir():
            name = entry.name.lower().replace("-", "_")
            if "nnunet_anatomask" in name or entry.suffix == ".pth" or (view / entry.name).exists():
                continue
            (view / entry.name).symlink_to(entry)
    t_site = Path(subprocess.run(
        [str(venv_dir / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip())
    (t_site / "_layer_on_main_venv.pth").write_text(str(view) + "\n")
    return venv_dir


def _source_copy(tmp_path: Path) -> Path:
    """Build from a copy so that build/ and *.egg-info never land in (or race in) the working tree."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "nnunet_anatomask_hook.py", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "nnunet_anatomask", src / "nnunet_anatomask", ignore=ignore)
    return src


# The editable install repeats the same registration path (slow: the default suite's budget, docs/installation.md).
@pytest.mark.parametrize("editable", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["pip_install", "pip_install_editable"])
def test_install_into_fresh_venv_and_uninstall(tmp_path, editable):
    venv_dir = _layered_venv(tmp_path)
    py = venv_dir / "bin" / "python"
    src = _source_copy(tmp_path)
    env = clean_env(tmp_path)

    p = run([py, "-c", "import importlib.util as u; print('SPEC=' + str(u.find_spec('nnunet_anatomask')))"],
            tmp_path, env=env)
    assert value(p, "SPEC") == "None", "the throwaway venv must not see another nnunet_anatomask"

    cmd = [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    p = run(cmd + (["-e", src] if editable else [src]), tmp_path, env=env, timeout=600)
    assert p.returncode == 0, out(p)

    t_site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      tmp_path, env=env).stdout.strip())
    pth = t_site / "nnunet_anatomask.pth"
    assert pth.read_text().strip() == "import nnunet_anatomask_hook"
    assert (venv_dir / "bin" / "nnUNetv2_pretrain").exists()

    expected = installed_ext_folder(py, tmp_path)
    if editable:
        assert Path(expected) == src / "nnunet_anatomask" / "_ext_trainers"
    else:
        assert Path(expected) == t_site / "nnunet_anatomask" / "_ext_trainers"
        assert (t_site / "nnunet_anatomask_hook.py").is_file()
    assert os.path.isfile(os.path.join(expected, EXT_MODULE))

    p = run([py, "-c", PRINT_EXT], tmp_path, env=env)
    assert value(p, "EXT") == expected, out(p)
    # a user's own value is kept, ours appended
    p = run([py, "-c", PRINT_EXT], tmp_path, env={**env, "nnUNet_extTrainer": "/some/user/folder"})
    assert value(p, "EXT") == os.pathsep.join(["/some/user/folder", expected]), out(p)

    p = run([py, "-c", FIND_TRAINER], tmp_path, env=env)
    assert p.returncode == 0, out(p)
    assert value(p, "TRAINER_MODULE").startswith("nnunet_anatomask."), out(p)

    p = run([py, "-m", "pip", "uninstall", "-y", "nnunet-anatomask"], tmp_path, env=env)
    assert p.returncode == 0, out(p)
    assert not pth.exists(), "pip uninstall left nnunet_anatomask.pth behind"
    assert not list(t_site.glob("*nnunet_anatomask*")), list(t_site.glob("*nnunet_anatomask*"))

    p = run([py, "-c", PRINT_EXT], tmp_path, env=env)
    assert value(p, "EXT") == "None", out(p)
    p = run([py, "-c", FIND_TRAINER], tmp_path, env=env)
    assert p.returncode != 0 and "Could not find requested nnunet trainer" in out(p), out(p)


# --------------------------------------------------------------------------------------------------------------
# (c) the hook itself
# --------------------------------------------------------------------------------------------------------------
def test_startup_imports_neither_torch_nor_package(tmp_path, ext_folder):
    code = ("import os, sys; print('EXT=' + str(os.environ.get('nnUNet_extTrainer'))); "
            "print('HEAVY=' + ','.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'numpy', 'nnunetv2', 'nnunet_anatomask'))))")
    p = run([sys.executable, "-X", "importtime", "-c", code], tmp_path)
    assert p.returncode == 0, out(p)
    assert value(p, "EXT") == ext_folder  # the hook did run in this process
    assert value(p, "HEAVY") == ""
    imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    assert "nnunet_anatomask_hook" in imported
    assert not imported & {"torch", "numpy", "nnunetv2", "nnunet_anatomask"}, sorted(imported)


def test_hook_appends_once_and_keeps_user_value(tmp_path, ext_folder):
    # user value kept, ours appended; a child process (env inherited) does not add it twice
    code = ("import os, subprocess, sys; print('EXT=' + os.environ['nnUNet_extTrainer']); "
            "c = subprocess.run([sys.executable, '-c', \"import os; print(os.environ['nnUNet_extTrainer'])\"], "
            "capture_output=True, text=True); print('CHILD=' + c.stdout.strip())")
    user = os.pathsep.join(["/a/b", "/c/d"])
    p = run([sys.executable, "-c", code], tmp_path, env=clean_env(tmp_path, nnUNet_extTrainer=user))
    assert p.returncode == 0, out(p)
    assert value(p, "EXT") == os.pathsep.join([user, ext_folder])
    assert value(p, "CHILD") == value(p, "EXT")


@pytest.mark.parametrize("failure", ["finder_raises", "not_installed"])
def test_hook_never_raises(monkeypatch, failure):
    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if failure == "finder_raises":
                raise ValueError("broken import system")
            return None

    hook = REPO / "nnunet_anatomask_hook.py"
    code = compile(hook.read_text(), str(hook), "exec")
    monkeypatch.setenv("nnUNet_extTrainer", "/user/value")
    monkeypatch.delitem(sys.modules, "nnunet_anatomask", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder()])
    exec(code, {"__name__": "hook_under_test"})  # must not raise
    assert os.environ["nnUNet_extTrainer"] == "/user/value"


def test_hook_module_finds_package_like_importlib(tmp_path, ext_folder):
    # the hook's own meta_path search agrees with importlib.util.find_spec in a normal start-up
    code = ("import importlib.util, os, nnunet_anatomask_hook as h; "
            "print('HOOK=' + os.pathsep.join(h._package_dirs())); "
            "print('UTIL=' + os.pathsep.join(importlib.util.find_spec('nnunet_anatomask').submodule_search_locations))")
    p = run([sys.executable, "-c", code], tmp_path)
    assert p.returncode == 0, out(p)
    assert value(p, "HOOK") == value(p, "UTIL") == os.path.dirname(ext_folder)
