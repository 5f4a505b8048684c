"""Stage 1: masked-image-modelling pretraining on the trainer's own network, as one runner object.

The runner needs only a built nnU-Net trainer (plans, dataset, device) and a scheme class. The network is built
by the trainer's own ``build_network_architecture`` (so a trainer that overrides it pretrains what it fine-tunes);
a backbone (pretraining/backbones/) turns it into a masked model with its mask grid; the scheme's ``step`` decides
masks, forwards and losses; the runner owns the loop (one optimiser step: stage1_loop.py), logs, pictures and
checkpoints (docs/architecture.md), and calls its callbacks (stage1_callbacks.py) at the points marked
``# callbacks:``: the held-out loss, checkpoint_best, the probe, the progress bar, the experiment logger
(stage1_watch.py, docs/watching.md), and those a tool adds (``add_callback``).
"""
import json
import os
from time import time

import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.helpers import empty_cache

from nnunet_anatomask import checkpoint_io, knobs
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.interop import stage1 as interop
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, CITATIONS_KEY, write_beside
from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.schemes.base import Picture, Scheme
from nnunet_anatomask.pretraining.schemes.settings import describe, plain, run_settings
import nnunet_anatomask.trainers.stage1_ddp as stage1_ddp
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback, timed_call
from nnunet_anatomask.trainers.stage1_data import shutdown, stage1_batches
from nnunet_anatomask.trainers.networks import input_channels, trainer_network
from nnunet_anatomask.trainers.stage1_loop import Stage1Loop
from nnunet_anatomask.trainers.stage1_picture import picture_path, save_picture
from nnunet_anatomask.trainers.stage1_sampling import stage1_cases
from nnunet_anatomask.trainers.stage1_watch import watch_callbacks


FINAL_LOSS_IS = ("the last epoch's mean training loss of the scheme: for the reconstruction part, the mean squared "
                 "error on masked cells against per-cell normalised targets (each cell of the input scaled to mean 0, "
                 "variance 1), so 1.0 is what predicting every cell's mean scores and 0 is perfect; schemes with "
                 "extra terms (predictor, consistency) add them")


def prepare_trainer(trainer) -> None:
    """What stage 1 needs of nnUNetTrainer.initialize(): the (per-rank) batch size and the dataset class; not the
    segmentation network and optimiser, which stage 2 builds after stage 1."""
    trainer._set_batch_size_and_oversample()
    if trainer.dataset_class is None:
        trainer.dataset_class = infer_dataset_class(trainer.preprocessed_dataset_folder)


class BatchTooSmallError(PluginError, ValueError):
    """The per-process batch is smaller than the scheme needs (e.g. GL-MAE's global + local view)."""


def check_batch(trainer, scheme_class: type[Scheme]) -> None:
    """Before any step: the batch each process gets (nnU-Net splits the plans' batch over -num_gpus ranks) holds
    at least the scheme's ``min_batch`` crops."""
    if trainer.batch_size >= scheme_class.min_batch:
        return
    split = f" (the plans' batch {trainer.configuration_manager.batch_size} split over " \
            f"{stage1_ddp.world_size()} ranks)" if stage1_ddp.is_distributed() else ""
    raise BatchTooSmallError(
        f"{scheme_class.name} needs at least {scheme_class.min_batch} crops per process, but each gets "
        f"{trainer.batch_size}{split}. Fix: use fewer GPUs (-num_gpus), or plans with a larger batch_size.")


class NonFiniteLossError(PluginError, RuntimeError):
    """Stage 1 produced a NaN/Inf loss; the last good checkpoint is kept."""


def foreground_threshold(trainer) -> float:
    """Channel-0 intensity above which a voxel counts as foreground in the logs (ours; labels are never used).

    CT: the plans' 0.5th foreground percentile, normalised as nnU-Net's CTNormalization does; z-scored
    channels: 1 standard deviation above the image mean.
    """
    if trainer.configuration_manager.normalization_schemes[0] != "CTNormalization":
        return 1.0
    props = trainer.plans_manager.foreground_intensity_properties_per_channel["0"]
    return (props["percentile_00_5"] - props["mean"]) / max(props["std"], 1e-8)


class Stage1Runner:
    def __init__(self, trainer, scheme_class: type[Scheme], folder: str = ""):
        """``folder``: where stage 1 writes (default: the trainer's fold folder / pretraining)."""
        self.trainer, self.scheme_class = trainer, scheme_class
        self.device = stage1_ddp.stage1_device(trainer)
        self.num_epochs = knobs.read_knob(knobs.PRETRAIN_EPOCHS)
        self.iterations = knobs.read_knob(knobs.ITERS_PER_EPOCH)
        self.save_every = knobs.read_knob(knobs.SAVE_EVERY)
        with torch.device("meta"):  # structure only, nothing allocated: the grid is checked before any work
            network = self.build_network()
        self.architecture = f"{type(network).__module__}.{type(network).__qualname__}"
        self.backbone = backbone_for(network, trainer.configuration_manager.patch_size)
        self.grid = self.backbone.grid
        self.folder = folder or os.path.join(trainer.output_folder, "pretraining")
        self.current_epoch = 0
        # the user's settings, checked now, and the optimiser settings: nowhere else (recipes.py)
        self.config, self.recipe = run_settings(scheme_class, knobs.scheme_config(), self.backbone)
        self.model = self.scheme = self.loop = self.log = None
        self.added: list[Stage1Callback] = []  # a tool's callbacks (add_callback)
        self.callbacks: list[Stage1Callback] = []  # every callback of the run, set by build()
        self.callback_seconds: dict[str, float] = {}  # "Class.event" -> wall time in this process (summary.json)
        self.picture_scales: dict = {}  # colour scales fixed at each quantity's first picture (compare by eye)
        self.initial = self.initial_report = None  # where stage 1 started from, if given (docs/interop.md)

    @property
    def final_checkpoint(self) -> str:
        return os.path.join(self.folder, "checkpoint_final.pth")

    @property
    def latest_checkpoint(self) -> str:
        return os.path.join(self.folder, "checkpoint_latest.pth")

    @property
    def best_checkpoint(self) -> str:
        """The epoch with the lowest held-out loss (stage1_heldout.py); stage 2 starts from final regardless."""
        return os.path.join(self.folder, "checkpoint_best.pth")

    def add_callback(self, callback: Stage1Callback) -> None:
        """Join the loop (stage1_callbacks.py): after the default ones (stage1_watch.py), before the experiment
        logger; added callbacks run in the order they were added."""
        self.added.append(callback)

    def notify(self, event: str, *args) -> list:
        """Call ``event`` (a Stage1Callback method) of every callback, in order, timed; their return values."""
        return [timed_call(self.callback_seconds, callback, event, self, *args) for callback in self.callbacks]

    def compatibility(self) -> dict:
        """What a stage-1 checkpoint must share with the run that uses it (docs/architecture.md)."""
        tr = self.trainer
        return {"scheme": self.scheme_class.name, "plans_name": tr.plans_manager.plans_name,
                "plans_hash": checkpoint_io.plans_hash(tr.configuration_manager.configuration),
                "configuration": tr.configuration_name, "patch_size": list(tr.configuration_manager.patch_size),
                "input_channels": self.input_channels(), "architecture": self.architecture}

    def check_settings(self, ckpt: dict, source: str) -> None:
        """The checkpoint's scheme settings equal this run's, setting by setting (a setting the checkpoint does not
        know, e.g. one added later, is not compared; checkpoints from before settings existed have none)."""
        saved, own = ckpt.get("scheme_settings") or {}, plain(self.config)
        differ = [f"{k} {saved[k]!r} (checkpoint) vs {own[k]!r} (this run)" for k in own
                  if k in saved and checkpoint_io.plain(saved[k]) != checkpoint_io.plain(own[k])]
        if differ:
            raise checkpoint_io.CheckpointError(
                f"{source} was made with other {self.scheme_class.name} settings than this run's: "
                f"{'; '.join(differ)}. Fix: use the same {knobs.SCHEME_CONFIG}, or delete/move the checkpoint so "
                f"that stage 1 runs again.")

    def input_channels(self) -> int:
        return input_channels(self.trainer)

    # --- building -------------------------------------------------------------------------------------
    def build_network(self) -> torch.nn.Module:
        """The trainer's own network with num_classes = input channels and no deep supervision: its decoder and
        output layer reconstruct the image, every other weight has the segmentation network's shape."""
        channels = self.input_channels()
        return trainer_network(self.trainer, channels, channels, deep_supervision=False)

    def build(self, initial_weights: str = None) -> None:
        """Masked model (backbone) from ``initial_weights`` if given (before the scheme copies the student into a
        teacher), scheme, the loop (AdamW over both by the backbone's recipe); compiled where nnU-Net compiles."""
        tr = self.trainer
        self.model = self.backbone.masked_model(self.build_network(), self.recipe).to(self.device)
        if initial_weights is not None:
            self.initial_report, self.initial = interop.start_from(initial_weights, self.model.network, tr,
                                                                   self.grid.patch_size)
        self.scheme = self.scheme_class(self.model, self.grid, self.num_epochs, foreground_threshold(tr),
                                        self.config).to(self.device)
        compiled = self.device.type == "cuda" and tr._do_i_compile()  # nnU-Net's rule (CUDA, nnUNet_compile)
        self.loop = Stage1Loop(self.model, self.scheme, self.device, self.recipe, compiled)
        log_class = stage1_ddp.log_class()  # rank 0 writes the log; other ranks keep figures only
        self.log = log_class(self.folder, f"stage 1: {self.scheme.name} on {tr.plans_manager.dataset_name} "
                             f"{tr.configuration_name} fold {tr.fold}")
        self.callbacks = watch_callbacks(self.added)
        self.current_epoch = 0

    # --- the loop -------------------------------------------------------------------------------------
    def run(self, resume: bool = False, initial_weights: str = None) -> str:
        """Run (or resume) stage 1 to the end, from ``initial_weights`` (a checkpoint, ours or nnssl's) instead
        of random weights if given; returns the final checkpoint's path."""
        tr = self.trainer
        prepare_trainer(tr)  # not tr.initialize(): stage 2's network and optimiser are built after stage 1
        check_batch(tr, self.scheme_class)
        resuming = resume and os.path.isfile(self.latest_checkpoint)
        self.build(None if resuming else initial_weights)
        if resuming:
            self.load(self.latest_checkpoint)
            self.log.print(f"Resuming stage 1 ({self.scheme.name}) from {self.latest_checkpoint} "
                           f"at epoch {self.current_epoch}")
        elif initial_weights is not None:
            for line in self.initial_report.lines():
                self.log.print(line)
        stage1_ddp.unpack_dataset(tr)
        crop_scale = self.config.crop_scale
        crop = "" if crop_scale == 1 else f", loader crops {crop_scale:.3g} x the patch"
        self.log.print(f"Stage 1: {self.scheme.name} pretraining for {self.num_epochs} epochs x "
                       f"{self.iterations} iterations, mask grid {self.grid.cells_per_axis} cells of "
                       f"{self.grid.cell_size} voxels, batch size {tr.batch_size}{crop}")
        self.log.print(f"Stage 1 settings ({self.scheme.name}; * = set by {knobs.SCHEME_CONFIG}): "
                       f"{describe(self.config)}")
        ratios = [getattr(self.scheme, "ratio", lambda e: None)(e) for e in (0, self.num_epochs - 1)]
        self.log.print(self.recipe.describe(*ratios))
        if stage1_ddp.is_distributed():
            self.log.print(stage1_ddp.describe(tr))
        self.log.print(stage1_cases(tr)[2])
        batches = stage1_batches(tr, crop_scale, self.device)
        self.notify("on_run_start")  # callbacks: fixed crops, best so far, probe at initialisation, logger run
        start = time()
        try:
            for epoch in range(self.current_epoch, self.num_epochs):
                self.train_epoch(epoch, batches)
        finally:
            shutdown(batches)
        self.finish(time() - start)
        return self.final_checkpoint

    def train_epoch(self, epoch: int, batches) -> None:
        lr = self.loop.set_lr(epoch, self.num_epochs)
        stage1_ddp.reseed_ranks(self.device)  # different masks and crops on every rank
        self.model.train()
        self.notify("on_epoch_start", epoch)  # callbacks: progress bar
        start, sums = time(), {}
        for _ in range(self.iterations):
            batch = next(batches)
            out = self.loop.train_step(batch, epoch)
            for extra in self.notify("on_step_end", epoch, batch, out):  # callbacks: progress bar, a tool's figures
                out.figures.update(extra or {})
            for name, value in out.figures.items():
                sums[name] = sums.get(name, 0.0) + value
        means = {name: (value / self.iterations).item() for name, value in sums.items()}
        means = stage1_ddp.mean_over_ranks(means)  # the same figures, and the same finiteness verdict, on every rank
        self.check_finite(epoch, means)
        figures = {"loss": means.pop("loss"), "lr": lr, **self.scheme.epoch_figures(epoch), **means,
                   "epoch_time": time() - start}
        self.notify("on_epoch_end", epoch, figures)  # callbacks: held-out loss, probe (they add figures)
        self.end_epoch(epoch, figures, out.picture)
        self.notify("on_epoch_logged", epoch, figures)  # callbacks: checkpoint_best, experiment logger

    def check_finite(self, epoch: int, means: dict) -> None:
        """A NaN/Inf loss stops the run (without a grad scaler to skip such steps); the last checkpoint stays."""
        bad = means.pop("nonfinite_steps") * self.iterations
        if bad > 0 and self.loop.grad_scaler is None:
            kept = self.latest_checkpoint if os.path.isfile(self.latest_checkpoint) else "none yet"
            raise NonFiniteLossError(
                f"Stage 1 produced a non-finite loss in {bad:.0f} of {self.iterations} steps of epoch {epoch}. "
                f"Stopped without saving this epoch; last good checkpoint: {kept}. Fix: check the preprocessed "
                f"data for NaN/Inf, then resume with --c (or lower the learning rate).")
        if bad > 0:
            self.log.print(f"WARNING: {bad:.0f} steps of epoch {epoch} had a non-finite loss and were skipped "
                           f"by the grad scaler")

    def end_epoch(self, epoch: int, figures: dict, picture: Picture) -> None:
        self.log.record(epoch, figures)
        self.log.print_epoch(epoch, self.num_epochs, self.scheme.name, figures)
        self.current_epoch = epoch + 1
        last = epoch == self.num_epochs - 1
        if self.current_epoch % self.save_every == 0 and not last:
            self.save(self.latest_checkpoint)
        if (epoch % max(1, self.num_epochs // 10) == 0 or last) and stage1_ddp.rank() == 0:
            self.save_picture(epoch, picture)
        self.log.plot()

    def finish(self, wall_time: float) -> None:
        self.save(self.final_checkpoint)
        stage1_ddp.barrier()  # every rank finds the final checkpoint (stage 2 loads it) once rank 0 wrote it
        if stage1_ddp.rank() == 0:
            self.write_summary(wall_time)
        self.model = self.scheme = self.loop = None
        empty_cache(self.device)

    def write_summary(self, wall_time: float) -> None:
        if os.path.isfile(self.latest_checkpoint):
            os.remove(self.latest_checkpoint)
        values = self.log.values
        summary = {"scheme": self.scheme.name, "epochs": self.num_epochs,
                   "iterations_per_epoch": self.iterations,
                   "final_loss": values["loss"][-1] if values.get("loss") else None,
                   "final_loss_is": FINAL_LOSS_IS,
                   "train_time_s": round(sum(values.get("epoch_time", [])), 2),
                   "wall_time_s": round(wall_time, 2), "checkpoint": self.final_checkpoint}
        self.notify("on_run_end", summary)  # callbacks: best held-out loss, probe Dice; logger summary
        summary["callback_time_s"] = {k: round(v, 3) for k, v in sorted(self.callback_seconds.items())}
        with open(os.path.join(self.folder, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        self.log.print(f"Stage 1 done: {self.final_checkpoint}")

    # --- pictures and checkpoints ---------------------------------------------------------------------
    def save_picture(self, epoch: int, picture: Picture) -> None:
        """The epoch's picture (stage1_picture.py), its colour scales fixed at the run's first picture."""
        names = [str(v) for v in self.trainer.dataset_json["channel_names"].values()]
        self.picture_scales = save_picture(picture, self.grid, picture_path(self.folder, epoch),
                                           f"{self.scheme.name}, epoch {epoch}", names, self.picture_scales)

    def checkpoint(self) -> dict:
        """Everything needed to resume, CPU tensors and plain types only (weights_only-loadable)."""
        tr = self.trainer
        init_args = {k: checkpoint_io.plain(v) for k, v in tr.my_init_kwargs.items()}
        return {
            "network_weights": checkpoint_io.to_cpu(self.model.network.state_dict()),
            "scheme": self.scheme.name,
            "scheme_state": checkpoint_io.to_cpu({"scheme": self.scheme.state_dict(),
                                                   "model_extra": self.model.extra_state_dict(),
                                                   "rng": checkpoint_io.rng_state(),
                                                   "picture_scales": dict(self.picture_scales)}),
            "optimizer_state": checkpoint_io.to_cpu(self.loop.optimizer.state_dict()),
            "grad_scaler_state": self.loop.grad_scaler.state_dict() if self.loop.grad_scaler is not None else None,
            "current_epoch": self.current_epoch,
            "heldout_loss": (self.log.values.get("heldout_loss") or [None])[-1],  # this epoch's, where there is one
            "logging": self.log.state(),
            "init_args": init_args,
            "trainer_name": tr.__class__.__name__,
            **self.compatibility(),
            **self.interop_fields(),
        }

    def interop_fields(self) -> dict:
        """nnssl's adaptation plan, citations, the scheme's settings and the budget (docs/interop.md)."""
        budget = {"epochs": self.num_epochs, "iterations_per_epoch": self.iterations,
                  "batch_size": self.trainer.configuration_manager.batch_size}
        return interop.checkpoint_fields(self.model.network, self.trainer, self.scheme_class.name, plain(self.config),
                                         self.input_channels(), budget, self.initial)

    def save(self, path: str) -> None:
        if stage1_ddp.rank() == 0:  # the same rank-0 test as the log, pictures and summary
            ckpt = self.checkpoint()
            checkpoint_io.atomic_save(ckpt, path)
            if ADAPTATION_PLAN_KEY in ckpt:  # nnssl writes it beside its checkpoints too
                write_beside(path, ckpt[ADAPTATION_PLAN_KEY])
            self.notify("on_checkpoint", path)  # callbacks: a tool's

    def load(self, path: str) -> None:
        """Restore network, mask tokens, scheme state (teacher...), optimiser, scaler, epoch, log and RNGs."""
        ckpt = checkpoint_io.load_checkpoint_file(path, "stage-1 checkpoint")
        checkpoint_io.check_same(ckpt, self.compatibility(), f"The stage-1 checkpoint {path}")
        self.check_settings(ckpt, f"The stage-1 checkpoint {path}")
        self.model.network.load_state_dict(ckpt["network_weights"])
        state = ckpt["scheme_state"]
        self.model.load_extra_state_dict(state["model_extra"])
        self.scheme.load_state_dict(state["scheme"])
        self.loop.load_state(ckpt["optimizer_state"], ckpt["grad_scaler_state"], path)
        self.current_epoch = ckpt["current_epoch"]
        self.log.load_state(ckpt["logging"])
        self.picture_scales = dict(state.get("picture_scales", {}))  # absent in checkpoints before 0.2
        if "initial_weights" in ckpt:  # a resumed run still names where it started, and its citations
            self.initial = {**ckpt["initial_weights"], CITATIONS_KEY: ckpt.get(CITATIONS_KEY, [])}
        checkpoint_io.set_rng_state(state["rng"])
