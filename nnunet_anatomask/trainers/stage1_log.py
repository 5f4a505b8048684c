"""Stage 1's own log: a timestamped training_log file, per-epoch values, progress.png (nnU-Net's style).

Kept apart from nnU-Net's LocalLogger, which asserts a fixed key set and is restored by stage-2 `--c`; the same
figures reach nnU-Net's experiment-logger backends (W&B) through experiment_log.py.
"""
import os
from collections import defaultdict
from datetime import datetime

from nnunet_anatomask.plotting import plot_progress

EXTRA_TIMES = {"heldout_time": "held-out loss", "probe_time": "probe"}  # seconds after the epoch's steps


class Stage1Log:
    def __init__(self, folder: str, title: str):
        self.folder, self.title = folder, title
        os.makedirs(folder, exist_ok=True)
        now = datetime.now()
        self.log_file = os.path.join(folder, now.strftime("training_log_%Y_%-m_%-d_%H_%M_%S.txt"))
        self.values: dict[str, list[float]] = defaultdict(list)

    def print(self, *args) -> None:
        """Print with a timestamp, to the console and the log file, as nnU-Net's print_to_log_file."""
        line = " ".join(str(a) for a in (f"{datetime.now()}:", *args))
        with open(self.log_file, "a+") as f:
            f.write(line + "\n")
        print(line, flush=True)

    def print_epoch(self, epoch: int, num_epochs: int, scheme: str, figures: dict[str, float]) -> None:
        """One epoch in nnU-Net's log style: a blank line, the epoch, learning rate, training loss, held-out loss
        (where there is one), the scheme's figures, the epoch time (the steps; then the held-out loss and the probe).
        The probe prints its own line."""
        extra = [f"{what} {figures[key]:.2f} s" for key, what in EXTRA_TIMES.items() if key in figures]
        rest = {k: v for k, v in figures.items()
                if k not in ("loss", "heldout_loss", "lr", "epoch_time", *EXTRA_TIMES) and not k.startswith("probe_")}
        self.print("")
        self.print(f"Epoch {epoch} (stage 1: {scheme} pretraining, epochs 0-{num_epochs - 1})")
        self.print(f"Current learning rate: {figures['lr']:.5g}")
        self.print(f"train_loss {figures['loss']:.4f}")
        if "heldout_loss" in figures:
            self.print(f"heldout_loss {figures['heldout_loss']:.4f}")
        self.print(", ".join(f"{k} {v:.4g}" for k, v in rest.items()))
        self.print(f"Epoch time: {figures['epoch_time']:.2f} s" + (f" (then {', '.join(extra)})" if extra else ""))

    def record(self, epoch: int, figures: dict[str, float]) -> None:
        """Store one epoch's figures at index `epoch`: a resumed epoch is replaced, a figure that starts late
        (AnatoMask's teacher figures once alpha > 0) is NaN before."""
        for name, value in figures.items():
            history = self.values[name]
            del history[epoch:]
            history.extend([float("nan")] * (epoch - len(history)))
            history.append(float(value))

    def plot(self) -> None:
        plot_progress(dict(self.values), os.path.join(self.folder, "progress.png"), self.title)

    def state(self) -> dict:
        return {k: list(v) for k, v in self.values.items()}

    def load_state(self, state: dict) -> None:
        self.values = defaultdict(list, {k: list(v) for k, v in state.items()})
