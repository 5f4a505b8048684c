"""Where the brain templates of the anatomy dataset come from (anatomy_dataset.py): Debian's mricron-data and PyPI's
nilearn, found where their packages put them, never downloaded; what to install when they are missing."""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

MRICRON_DIRS = ("/usr/share/mricron/templates", "/usr/local/share/mricron/templates")
MRICRON_ENV = "nnUNet_anatomask_mricron_dir"  # optional override: a folder holding ch2bet.nii.gz, aal.nii.gz
NILEARN_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
INSTALL_HINT = ("Install one of them (nothing is downloaded at run time): `apt-get install mricron-data` "
                "(Debian/Ubuntu: Colin27 + AAL, label set 'lobes') and/or `pip install nilearn` (or `pip install -e '.[evaluation]'`; MNI ICBM152 "
                "2009 T1 + tissue maps inside the wheel, label set 'tissue'; with both, 'lobes' is tested on "
                "a held-out template).")


class SourceMissing(RuntimeError):
    """No (or not enough) template data is installed for the requested label set; the message says what to do."""


# --- finding the data --------------------------------------------------------------------------------------
def find_mricron_dir(explicit: Optional[str] = None) -> Optional[str]:
    """The mricron-data templates folder (with ch2bet.nii.gz, aal.nii.gz, aal.nii.txt), or None."""
    candidates = [explicit] if explicit else [os.environ.get(MRICRON_ENV), *MRICRON_DIRS]
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(d, f)) for f in ("ch2bet.nii.gz", "aal.nii.gz", "aal.nii.txt")):
            return d
    if explicit:
        raise SourceMissing(f"{explicit!r} does not hold ch2bet.nii.gz, aal.nii.gz and aal.nii.txt (mricron-data).")
    return None


def find_nilearn_dir(explicit: Optional[str] = None) -> Optional[str]:
    """nilearn's bundled data folder with the ICBM152 2009 T1/GM/WM files, or None. nilearn is not imported."""
    if explicit:
        candidates = [explicit]
    else:
        try:
            spec = importlib.util.find_spec("nilearn")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            return None
        candidates = [os.path.join(p, "datasets", "data") for p in spec.submodule_search_locations]
    for d in candidates:
        if all(os.path.isfile(os.path.join(d, f)) for f in NILEARN_FILES.values()):
            return d
    if explicit:
        raise SourceMissing(f"{explicit!r} does not hold {sorted(NILEARN_FILES.values())} (nilearn's data).")
    return None


def available_sources(mricron_dir: Optional[str] = None, nilearn_dir: Optional[str] = None) -> dict:
    """{'mricron': dir or None, 'nilearn': dir or None}."""
    return {"mricron": find_mricron_dir(mricron_dir), "nilearn": find_nilearn_dir(nilearn_dir)}


def default_label_set(sources: dict) -> str:
    if sources["mricron"]:
        return "lobes"
    if sources["nilearn"]:
        return "tissue"
    raise SourceMissing("No brain template found: neither mricron-data (/usr/share/mricron/templates) nor nilearn "
                        "is installed. " + INSTALL_HINT)
