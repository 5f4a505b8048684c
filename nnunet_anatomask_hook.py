"""Start-up hook of nnunet-anatomask: registers our trainers with nnU-Net v2.

Run at every interpreter start by the one-line ``nnunet_anatomask.pth`` that the package installs into
site-packages. nnU-Net v2 has no plugin entry point; it looks trainers up in the folders listed in the env var
``nnUNet_extTrainer`` (os.pathsep-separated, read at lookup time). This module APPENDS our flat re-export
folder ``<nnunet_anatomask>/_ext_trainers`` to that variable, keeping whatever the user set, never twice.

Rules: it must stay cheap and must never raise (a broken hook must not break Python start-up), and it never
imports torch or the ``nnunet_anatomask`` package, with one exception: for ``nnUNetv2_train ... -num_gpus N``
(N > 1) it runs ``nnunet_anatomask.gpu_check.check_train_command``, which imports torch to count the visible GPUs
and stops with one message when they are fewer than N and the trainer is ours (nnU-Net's launch would otherwise
crash in its spawned ranks before our trainer exists). The package folder is located, not imported, by asking the
finders on ``sys.meta_path`` for its spec: the same search ``importlib.util.find_spec`` does (so it sees
regular installs and setuptools' editable finder alike), without importing importlib.util, whose imports
(contextlib, collections, functools) would cost every interpreter start ~3 ms.
"""
import os
import sys

_PACKAGE = "nnunet_anatomask"
_ENV = "nnUNet_extTrainer"


def _package_dirs():
    module = sys.modules.get(_PACKAGE)
    if module is not None:
        return list(getattr(module, "__path__", None) or [])
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(_PACKAGE, None)
        if spec is not None:
            return list(spec.submodule_search_locations or [])
    return []


def _register():
    for location in _package_dirs():
        folder = os.path.join(location, "_ext_trainers")
        if os.path.isdir(folder):
            break
    else:
        return
    parts = [p for p in os.environ.get(_ENV, "").split(os.pathsep) if p]
    norm = os.path.normcase(os.path.abspath(folder))
    if any(os.path.normcase(os.path.abspath(p)) == norm for p in parts):
        return
    os.environ[_ENV] = os.pathsep.join(parts + [folder])


def _check_num_gpus():
    argv = getattr(sys, "argv", None) or [""]
    if os.path.basename(argv[0]) == "nnUNetv2_train" and "-num_gpus" in argv:
        from nnunet_anatomask.gpu_check import check_train_command

        check_train_command(argv)


try:
    _register()
    _check_num_gpus()
except Exception:  # noqa: BLE001 - a broken hook must never break interpreter start-up
    pass
