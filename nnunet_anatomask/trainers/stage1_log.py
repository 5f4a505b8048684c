"""Stage 1's own log: a timestamped training_log file, per-epoch values, progress.png (nnU-Net's style).

Kept apart from nnU-Net's MetaLogger, which asserts a fixed key set and is restored by stage-2 `--c`.
"""
import os
from collections import defaultdict
from datetime import datetime

from nnunet_anatomask.plotting import plot_progress


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
