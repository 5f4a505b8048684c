"""What the registration hook costs every Python start-up.

    python scripts/startup_cost.py [--runs 20]

Run it with the dev venv's python (it needs pip and setuptools importable). It builds three throwaway venvs
layered on the current one (each sees the current venv's packages, except any nnunet-anatomask install, via
one plain path line in a .pth), identical except for:

  none      nnunet-anatomask not installed
  regular   `pip install .`     -> nnunet_anatomask.pth + nnunet_anatomask_hook
  editable  `pip install -e .`  -> setuptools' __editable__ finder + nnunet_anatomask.pth + hook

and times `python -c pass` in each, interleaved round by round, printing medians and the differences in ms.
It also prints the hook's own line from `python -X importtime -c pass` in the current environment.
"""
import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layered_venv(root: Path, name: str) -> Path:
    venv_dir = root / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True)
    view = root / "view"
    if not view.exists():
        view.mkdir()
        sources = [Path(sysconfig.get_paths()["purelib"])]
        for mod in ("pip", "setuptools"):
            sources.append(Path(importlib.util.find_spec(mod).origin).parent.parent)
        for source in dict.fromkeys(sources):
            for entry in source.iterdir():
                low = entry.name.lower().replace("-", "_")
                if "nnunet_anatomask" in low or entry.suffix == ".pth" or (view / entry.name).exists():
                    continue
                (view / entry.name).symlink_to(entry)
    site = subprocess.run([str(venv_dir / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_layer.pth").write_text(str(view) + "\n")
    return venv_dir / "bin" / "python"


def source_copy(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "nnunet_anatomask_hook.py", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "nnunet_anatomask", src / "nnunet_anatomask",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def time_once(python: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True, env=env, cwd=tempfile.gettempdir())
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "nnUNet_extTrainer"))}
    with tempfile.TemporaryDirectory(prefix="startup_cost_") as tmp:
        root = Path(tmp)
        src = source_copy(root)
        pythons = {name: layered_venv(root, name) for name in ("none", "regular", "editable")}
        pip = ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        subprocess.run([str(pythons["regular"]), *pip, str(src)], check=True, env=env,
                       capture_output=True)
        subprocess.run([str(pythons["editable"]), *pip, "-e", str(src)], check=True, env=env,
                       capture_output=True)
        for name, py in pythons.items():  # sanity: the hook is active exactly where installed
            out = subprocess.run([str(py), "-c", "import os; print(os.environ.get('nnUNet_extTrainer'))"],
                                 check=True, env=env, capture_output=True, text=True).stdout.strip()
            assert (out == "None") == (name == "none"), (name, out)
        for py in pythons.values():  # warm-up (.pyc files, page cache)
            for _ in range(3):
                time_once(py, env)
        times = {name: [] for name in pythons}
        for _ in range(args.runs):
            for name, py in pythons.items():
                times[name].append(time_once(py, env))

    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"python -c pass, median of {args.runs} runs each ({sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"  none      {med['none']:7.2f} ms   (nnunet-anatomask not installed)")
    print(f"  regular   {med['regular']:7.2f} ms   (pip install .)     diff {med['regular'] - med['none']:+.2f} ms")
    print(f"  editable  {med['editable']:7.2f} ms   (pip install -e .)  diff {med['editable'] - med['none']:+.2f} ms")

    p = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=env, capture_output=True,
                       text=True, cwd=tempfile.gettempdir())
    lines = [l for l in p.stderr.splitlines() if "nnunet_anatomask_hook" in l or "__editable__" in l]
    print(f"-X importtime in {sys.prefix} (self us | cumulative us | module):")
    for line in lines or ["  (hook not active in this environment)"]:
        print("  " + line.replace("import time:", "").strip())


if __name__ == "__main__":
    main()
