"""Schedules of stage 1, every one a function of the epoch and written as a fraction of the run (docs/usage.md).

Pure functions of (epoch, total epochs): a resumed run recomputes them and lands exactly where it stopped.
"""
import math


def warmup_cosine_lr(epoch: int, total_epochs: int, base_lr: float, min_lr: float,
                     warmup_fraction: float) -> float:
    """Linear warm-up over `warmup_fraction` of the epochs, then cosine from base_lr to min_lr.

    AnatoMask (official code, SparK's lr schedule): warm-up 20 of 1000 epochs, cosine to 1e-6.
    """
    warmup = max(1, round(warmup_fraction * total_epochs))
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    decay_epochs = max(1, total_epochs - warmup)
    progress = min(1.0, (epoch - warmup) / decay_epochs)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_poly_lr(epoch: int, total_epochs: int, base_lr: float, warmup_fraction: float,
                   exponent: float = 0.9) -> float:
    """Linear warm-up over `warmup_fraction` of the epochs, then base_lr (1 - (e - W) / (E - W))^exponent.

    nnssl's BaseEvaMAETrainer (Lin_incr_LRScheduler for 50 epochs, then PolyLRScheduler_offset, exponent 0.9).
    """
    warmup = max(1, round(warmup_fraction * total_epochs))
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    progress = min(1.0, (epoch - warmup) / max(1, total_epochs - warmup))
    return base_lr * (1.0 - progress) ** exponent


def hard_fraction_anatomask(epoch: int, total_epochs: int, alpha_max: float = 0.5) -> float:
    """AnatoMask masking dynamics: alpha = alpha_max * min(1, e / (E - 1)); alpha = 0 when E = 1.

    The official code uses (e + 1) / (E - 1), which is not 0 at the start and divides by zero at E = 1.
    """
    if total_epochs <= 1:
        return 0.0
    return alpha_max * min(1.0, epoch / (total_epochs - 1))


def hard_fraction_hpm(epoch: int, total_epochs: int, alpha_max: float = 0.5) -> float:
    """HPM's easy-to-hard schedule: alpha = alpha_max * (e + 1) / E."""
    return alpha_max * (epoch + 1) / max(1, total_epochs)


def ema_momentum(epoch: int, total_epochs: int, start: float = 0.999, end: float = 0.9999,
                 ramp_fraction: float = 0.25) -> float:
    """Teacher momentum: linear from `start` to `end` over the first `ramp_fraction` of epochs, then constant.

    AnatoMask: 0.999 -> 0.9999 over the first 25 % of epochs; HPM: over the first 1/8.
    """
    ramp = max(1, round(ramp_fraction * total_epochs))
    if epoch >= ramp:
        return end
    return start + (end - start) * epoch / ramp


def linear_ratio(epoch: int, total_epochs: int, start: float, end: float) -> float:
    """A masking ratio growing linearly from `start` (first epoch) to `end` (last epoch); AMLP's AMR."""
    if total_epochs <= 1:
        return end
    return start + (end - start) * epoch / (total_epochs - 1)
