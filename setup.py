"""Packaging for nnunet-anatomask.

All metadata lives here (pyproject.toml only names the build backend).

Trainer registration
--------------------
nnU-Net v2 has no plugin entry point: it finds trainers in its own folder and then in the folders listed in
the env var ``nnUNet_extTrainer``. We ship a one-line ``nnunet_anatomask.pth`` into site-packages that runs
``import nnunet_anatomask_hook`` at interpreter start-up; that tiny module appends
``<package>/_ext_trainers`` to ``nnUNet_extTrainer`` (see docs/installation.md).

setuptools does not install a ``.pth`` by itself, so two commands are extended:

* ``build_py`` writes the ``.pth`` at the root of the build dir, i.e. the root of the wheel
  (``pip install .``); it is then listed in the wheel's RECORD, so ``pip uninstall`` removes it.
* ``editable_wheel`` (``pip install -e .``) builds its wheel from a "strategy" (a ``.pth`` plus finder) and
  ignores build_py's output and ``data_files``; we wrap the strategy it selects so that it also writes our
  ``.pth`` into the editable wheel. Its name sorts after setuptools' ``__editable__.*.pth``, and ``site``
  processes ``.pth`` files in name order, so the editable finder is in place when the hook runs.
"""
import os
import re

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py as _build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_NAME = "nnunet_anatomask.pth"
PTH_CONTENT = "import nnunet_anatomask_hook\n"


def read_version() -> str:
    with open(os.path.join(HERE, "nnunet_anatomask", "__init__.py"), encoding="utf-8") as f:
        m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
    if m is None:
        raise RuntimeError("__version__ not found in nnunet_anatomask/__init__.py")
    return m.group(1)


def read_readme() -> str:
    path = os.path.join(HERE, "README.md")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    return ""


class build_py(_build_py):
    """Also writes ``nnunet_anatomask.pth`` at the wheel's root (regular, non-editable builds)."""

    def _pth_path(self) -> str:
        return os.path.join(self.build_lib, PTH_NAME)

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.mkpath(self.build_lib)
            with open(self._pth_path(), "w", encoding="utf-8") as f:
                f.write(PTH_CONTENT)

    def get_outputs(self, *args, **kwargs):
        outputs = list(super().get_outputs(*args, **kwargs))
        if not getattr(self, "editable_mode", False):
            outputs.append(self._pth_path())
        return outputs


cmdclass = {"build_py": build_py}

try:  # setuptools >= 64 (PEP 660 editable installs)
    from setuptools.command.editable_wheel import editable_wheel as _editable_wheel
except ImportError:  # pragma: no cover - very old setuptools: no PEP 660, nothing to extend
    _editable_wheel = None


if _editable_wheel is not None:

    class _StrategyWithPth:
        """Wraps setuptools' editable strategy: same behaviour, plus our ``.pth`` in the wheel."""

        def __init__(self, inner):
            self._inner = inner

        def __call__(self, wheel, files, mapping):
            result = self._inner(wheel, files, mapping)
            wheel.writestr(PTH_NAME, PTH_CONTENT.encode("utf-8"))
            return result

        def __enter__(self):
            self._inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

    class editable_wheel(_editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = editable_wheel


setup(
    name="nnunet-anatomask",
    version=read_version(),
    description="Self-supervised masked-image-modelling pretraining (AnatoMask, SelfMedHPM, AMLP, GL-MAE, random "
    "masking) as nnU-Net v2 trainers, for nnunetv2 2.8",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    author="The nnunet-anatomask developers",
    license="Apache-2.0",  # nnU-Net's licence, the norm of its ecosystem
    license_files=["LICENSE"],
    keywords=["nnU-Net", "nnunetv2", "self-supervised learning", "masked image modelling", "medical image "
              "segmentation", "pretraining"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Operating System :: POSIX :: Linux",
        "Environment :: GPU :: NVIDIA CUDA",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
    python_requires=">=3.10",
    # _ext_trainers has no __init__.py on purpose (nnU-Net imports its one module as a top-level module),
    # so find_packages() does not see it; it is listed explicitly so its .py file is shipped.
    packages=find_packages(include=["nnunet_anatomask", "nnunet_anatomask.*"]) + ["nnunet_anatomask._ext_trainers"],
    py_modules=["nnunet_anatomask_hook"],
    install_requires=[
        # Exactly what the package imports (tests/test_dependencies.py). torch is deliberately unpinned: users
        # bring their own (CUDA) build; the CPU pair used by CI and the README lives in constraints.txt.
        "torch",
        # We rely on internals of these (docs/nnunet_internals.md, tests/test_nnunet_internals.py): pinned to
        # the range we test, from the tested release to the next minor one.
        "nnunetv2>=2.8.1,<2.9",
        "dynamic-network-architectures>=0.4.4,<0.5",
        "batchgeneratorsv2>=0.3.6,<0.4",
        "batchgenerators>=0.25.5,<0.26",
        "timm>=1.0,<2",  # Primus' EVA blocks and rotary embedding (pretraining/backbones/primus.py)
        "numpy",
        "scipy",
        "SimpleITK",
        "matplotlib",
        "tqdm",  # stage 1's progress bar (trainers/stage1_progress.py); nnU-Net brings it too
    ],
    extras_require={
        # the docs build is checked; --push's offline error; W&B offline (docs/watching.md)
        "test": ["pytest", "mkdocs", "huggingface_hub", "wandb"],
        "docs": ["mkdocs"],
        "wandb": ["wandb"],  # nnU-Net's W&B backend, for stage 1 as for stage 2 (nnUNet_wandb_enabled=1)
        "evaluation": ["nilearn"],  # the held-out ICBM152 template of `evaluate --size cpu|gpu` (docs/results.md)
        "hub": ["huggingface_hub"],  # nnUNetv2_share_pretrained --push (docs/interop.md)
    },
    entry_points={
        "console_scripts": [
            "nnUNetv2_pretrain = nnunet_anatomask.cli:main",
            "nnUNetv2_export_pretrained = nnunet_anatomask.export:main",
            "nnUNetv2_plan_and_preprocess_unlabelled = nnunet_anatomask.unlabelled.cli:main",
            "nnUNetv2_plan_like_pretrained = nnunet_anatomask.interop.plan_like_pretrained:main",
            "nnUNetv2_share_pretrained = nnunet_anatomask.interop.share:main",
        ],
    },
    cmdclass=cmdclass,
    zip_safe=False,
)
