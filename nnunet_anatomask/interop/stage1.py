"""What stage 1 writes and reads for interoperability (docs/interop.md): the fields every stage-1 checkpoint
carries (the nnssl adaptation plan, citations, and the scheme's settings and budget that a model card shows),
and the start of stage 1 from an initial checkpoint (ours or nnssl's)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

from torch import nn
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, CITATIONS_KEY, adaptation_plan
from nnunet_anatomask.interop.citations import merged, stage1_citations
from nnunet_anatomask.interop.plan_like_pretrained import mismatch_fix
from nnunet_anatomask.interop.weights_in import transfer
from nnunet_anatomask.transfer.report import TransferReport

def dataset_images(preprocessed_folder: str) -> Optional[int]:
    """How many preprocessed cases the dataset (or pool) holds, or None where the folder cannot be read."""
    try:
        return len(infer_dataset_class(preprocessed_folder).get_identifiers(preprocessed_folder))
    except Exception:  # noqa: BLE001 - a count for the model card only; never stop stage 1 for it
        return None


def checkpoint_fields(network: nn.Module, trainer, scheme_name: str, settings: dict, channels: int, budget: dict,
                      initial: Optional[dict] = None) -> dict:
    """The interop fields of a stage-1 checkpoint of ``network`` (built for ``trainer``'s plans); ``settings``: the
    scheme's settings as used (settings.plain), which resume and reuse also compare."""
    plans = trainer.plans_manager.plans
    plan = adaptation_plan(network, plans, trainer.configuration_name, channels)
    primus = hasattr(network, "eva")
    fields = {
        CITATIONS_KEY: merged(stage1_citations(scheme_name, primus), (initial or {}).get(CITATIONS_KEY, [])),
        "scheme_settings": settings,
        "budget": {**budget, "fold": trainer.fold,
                   "dataset_images": dataset_images(trainer.preprocessed_dataset_folder)},
    }
    if plan is not None:
        fields[ADAPTATION_PLAN_KEY] = plan
    if initial is not None:
        fields["initial_weights"] = {"path": initial["path"], "transfer": initial["transfer"]}
    return fields


def start_from(path: str, network: nn.Module, trainer, patch_size: Sequence[int]) -> tuple[TransferReport, dict]:
    """Load ``path`` (ours or nnssl's) into the stage-1 ``network`` (strictly; a stage-1 checkpoint of ours with its
    reconstruction head, the same output layer); returns the report and what the checkpoint fields keep of it
    (path, the report in one line, the source's citations)."""
    ckpt = checkpoint_io.load_checkpoint_file(path, "initial checkpoint")
    channels = network.get_submodule(network.keys_to_in_proj[0]).weight.shape[1]
    fix = mismatch_fix(ckpt, network, trainer.configuration_manager, trainer.plans_manager.dataset_name,
                       trainer.configuration_name, path, channels)
    result = transfer(ckpt, network, patch_size, f"initial checkpoint {path}", fix, with_output=True)
    return result, {"path": os.path.abspath(path), "transfer": result.summary(),
                    CITATIONS_KEY: list(ckpt.get(CITATIONS_KEY) or [])}
