"""Package metadata a user and a packager expect, as pip installed it; the CLIs print the same version."""
import subprocess
import sys
from importlib.metadata import metadata

import nnunet_anatomask


def test_installed_metadata():
    m = metadata("nnunet-anatomask")
    assert m["Version"] == nnunet_anatomask.__version__
    assert (m.get("License-Expression") or m.get("License")) == "Apache-2.0" and "LICENSE" in m.get_all("License-File")
    assert m["Author"] and m["Summary"] and "nnunetv2" in m["Summary"]
    classifiers = m.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering :: Medical") for c in classifiers)
    assert any(r.startswith("nnunetv2") and "<2.9" in r for r in m.get_all("Requires-Dist"))


def test_export_command_prints_its_usage():
    proc = subprocess.run([sys.executable, "-m", "nnunet_anatomask.export", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "nnUNetv2_export_pretrained" in proc.stdout and "-pretrained_weights" in proc.stdout
