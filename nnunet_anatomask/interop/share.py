"""nnUNetv2_share_pretrained: a stage-1 checkpoint as a folder in the layout nnU-Net main downloads (docs/interop.md).

    nnUNetv2_share_pretrained CHECKPOINT -o FOLDER [--licence ID] [--push REPO]

nnU-Net main's ``maybe_download_pretrained_weights`` (experiment_planning/like_nnssl.py) fetches
``adaptation_plan.json``, ``checkpoint_final.pth`` and ``config.json`` from a Hugging Face repository; the folder
holds these and a generated model card ``README.md``. The shared checkpoint keeps what fine-tuning and our
transfer checks read (weights, adaptation plan, citations, plans and dataset.json, compatibility fields) and
drops what only resuming needs (optimiser, scheme state with the teacher, logs). ``--push`` uploads the folder
with huggingface_hub (``pip install 'nnunet-anatomask[hub]'``); when that fails the folder stays where it is.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional

from nnunet_anatomask import __version__, checkpoint_io
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, CITATIONS_KEY, PLAN_FILE, first_configuration
from nnunet_anatomask.interop.model_card import model_card

CHECKPOINT_FILE, CONFIG_FILE, CARD_FILE = "checkpoint_final.pth", "config.json", "README.md"
SHARED_KEYS = ("network_weights", ADAPTATION_PLAN_KEY, CITATIONS_KEY, "scheme", "scheme_settings", "budget",
               "initial_weights", "current_epoch", "trainer_name", "init_args", "plans_name", "plans_hash",
               "configuration", "patch_size", "input_channels", "architecture")


class ShareError(PluginError, RuntimeError):
    """The folder cannot be written or pushed; the message names the problem and the fix."""


def shared_checkpoint(ckpt: dict) -> dict:
    """The keys of a stage-1 checkpoint that fine-tuning needs (no optimiser, teacher or logs)."""
    return {k: ckpt[k] for k in SHARED_KEYS if k in ckpt}


def config(ckpt: dict, licence: Optional[str]) -> dict:
    """config.json: what the folder holds, for people and download counters."""
    plan = ckpt[ADAPTATION_PLAN_KEY]
    _, entry = first_configuration(plan)
    return checkpoint_io.plain({
        "framework": "nnunet-anatomask", "framework_version": __version__, "format": "nnssl adaptation plan",
        "architecture": plan["architecture_plans"]["arch_class_name"], "scheme": ckpt.get("scheme"),
        "trainer_name": ckpt.get("trainer_name"), "configuration": ckpt.get("configuration"),
        "spacing": entry["spacing"], "patch_size": entry["patch_size"],
        "input_channels": plan["pretrain_num_input_channels"], "plans_hash": ckpt.get("plans_hash"),
        "epochs": ckpt.get("current_epoch"), "licence": licence})


def _write_text(path: str, text: str) -> None:
    tmp = checkpoint_io.temporary_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    checkpoint_io.commit(tmp, path)


def write_folder(checkpoint: str, folder: str, licence: Optional[str] = None, repo: Optional[str] = None) -> list[str]:
    """Write the four files into ``folder``; returns their paths."""
    ckpt = checkpoint_io.load_checkpoint_file(checkpoint, "stage-1 checkpoint")
    if "scheme" not in ckpt:
        raise ShareError(f"{checkpoint} is not a stage-1 checkpoint of nnunet-anatomask (it has no 'scheme'). Fix: "
                         f"share <fold>/pretraining/checkpoint_final.pth")
    if ADAPTATION_PLAN_KEY not in ckpt:
        raise ShareError(f"{checkpoint} carries no nnssl adaptation plan: an earlier nnunet-anatomask wrote it, or "
                         f"its network is one no plan describes. Fix: pretrain again with the current version.")
    existing = [f for f in os.listdir(folder)] if os.path.isdir(folder) else []
    if existing and CONFIG_FILE not in existing:
        raise ShareError(f"{folder} exists and holds other files ({', '.join(sorted(existing)[:3])}). Fix: choose an "
                         f"empty or new folder with -o")
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, name) for name in (CHECKPOINT_FILE, PLAN_FILE, CONFIG_FILE, CARD_FILE)]
    checkpoint_io.atomic_save(checkpoint_io.to_cpu(shared_checkpoint(ckpt)), paths[0])
    _write_text(paths[1], json.dumps(ckpt[ADAPTATION_PLAN_KEY], indent=2))
    _write_text(paths[2], json.dumps(config(ckpt, licence), indent=2))
    _write_text(paths[3], model_card(ckpt, licence, repo))
    return paths


def push(folder: str, repo: str) -> str:
    """Upload ``folder`` to the Hugging Face model repository ``repo``; returns its URL. Any failure (no
    huggingface_hub, no network, no token) is one error that says the folder is kept."""
    kept = f"The folder {os.path.abspath(folder)} is kept"
    try:
        import huggingface_hub
    except ImportError:
        raise ShareError(f"--push needs huggingface_hub. {kept}. Fix: pip install 'nnunet-anatomask[hub]', then "
                         f"run again with --push {repo} (or upload the folder yourself).") from None
    try:
        api = huggingface_hub.HfApi()
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=folder, repo_type="model")
    except Exception as e:  # noqa: BLE001 - network, offline mode, authentication: all end the same way
        reason = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise ShareError(f"Could not upload to the Hugging Face repository {repo}: {type(e).__name__}: {reason}. "
                         f"{kept}. Fix: check the network and `huggingface-cli login`, then run "
                         f"`huggingface-cli upload {repo} {os.path.abspath(folder)}` or this command again.") from None
    return f"https://huggingface.co/{repo}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="nnUNetv2_share_pretrained", description=__doc__.strip().splitlines()[0])
    p.add_argument("checkpoint", help="a stage-1 checkpoint (<fold>/pretraining/checkpoint_final.pth)")
    p.add_argument("-o", required=True, help="the folder to write")
    p.add_argument("--licence", default=None, help="licence id for the model card (e.g. cc-by-4.0); else to fill in")
    p.add_argument("--push", default=None, metavar="REPO", help="upload to this Hugging Face repository (user/name)")
    args = p.parse_args(argv)
    try:
        paths = write_folder(args.checkpoint, args.o, args.licence, args.push)
        print(f"Wrote {', '.join(os.path.basename(x) for x in paths)} to {os.path.abspath(args.o)}")
        if args.licence is None:
            print(f"The model card's licence is to fill in: edit {paths[-1]} (or pass --licence).")
        if args.push:
            print(f"Uploaded to {push(args.o, args.push)}")
    except PluginError as e:
        raise SystemExit(f"nnUNetv2_share_pretrained: {e}") from None


if __name__ == "__main__":
    main()
