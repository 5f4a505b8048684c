"""The transfer report: per part (stem, encoder, decoder), how many tensors were loaded as they are, adapted or left
at their fresh initialisation, and why; printed to the console and the fold's log (docs/recipes.md, Transfer).
One report for every load: stage 2's, stage 1 started from a checkpoint, nnssl-format checkpoints (docs/interop.md).
Counts are unique tensors (a tensor with several names in the state dict counts once)."""
from __future__ import annotations

from dataclasses import dataclass, field

from nnunet_anatomask.transfer.parts import PARTS

AS_IS, ADAPTED, FRESH = "as is", "adapted", "fresh"
STATUSES = (AS_IS, ADAPTED, FRESH)
SHOWN = 6  # module names listed per reason before "+N more"


@dataclass(frozen=True)
class Entry:
    """One tensor of the target network (its first name), its part, what happened to it and why."""

    key: str
    part: str
    status: str
    note: str = ""


@dataclass
class TransferReport:
    source: str
    mode: str                  # 'strict' | 'adapt'
    loading: str               # 'all' | 'encoder'
    entries: list[Entry] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)   # checkpoint tensors that went nowhere
    notes: list[str] = field(default_factory=list)    # e.g. how the plans differ

    def add(self, key: str, part: str, status: str, note: str = "") -> None:
        self.entries.append(Entry(key, part, status, note))

    def count(self, part: str, status: str) -> int:
        return sum(e.part == part and e.status == status for e in self.entries)

    def keys(self, status: str) -> list[str]:
        return [e.key for e in self.entries if e.status == status]

    def transferred(self, part: str) -> int:
        """Tensors of ``part`` that came from the checkpoint, as they were or adapted."""
        return self.count(part, AS_IS) + self.count(part, ADAPTED)

    def counts(self) -> str:
        """'N tensors transferred (stem a, encoder b, decoder c), F left at their fresh start'."""
        per_part = [self.transferred(p) for p in PARTS]
        return (f"{sum(per_part)} tensors transferred ({', '.join(f'{p} {n}' for p, n in zip(PARTS, per_part))}), "
                f"{len(self.keys(FRESH))} left at their fresh start")

    def summary(self) -> str:
        """The report in one line (a checkpoint's record of where it started, a command's output)."""
        return f"{self.source}: {self.counts()}" + "".join(f"; adapted {e.key}: {e.note}" for e in self.entries
                                                           if e.status == ADAPTED)

    def lines(self) -> list[str]:
        """The report as log lines: the counts, a table per part, then the adapted tensors and the reasons for fresh
        ones."""
        out = [f"Transfer report: {self.source} -> this network (transfer {self.mode}, loading {self.loading}): "
               f"{self.counts()}; tensors per part:",
               f"  {'part':<8}{AS_IS:>8}{ADAPTED:>9}{FRESH:>7}"]
        out += [f"  {p:<8}{self.count(p, AS_IS):>8}{self.count(p, ADAPTED):>9}{self.count(p, FRESH):>7}"
                for p in PARTS]
        out += [f"  adapted: {e.key}: {e.note}" for e in self.entries if e.status == ADAPTED]
        for note, modules in self._grouped(FRESH).items():
            shown = ", ".join(modules[:SHOWN]) + (f" +{len(modules) - SHOWN} more" if len(modules) > SHOWN else "")
            out.append(f"  fresh ({note}): {shown}")
        if self.unused:
            out.append(f"  unused checkpoint tensors: {len(self.unused)} ({', '.join(_modules(self.unused)[:SHOWN])}"
                       f"{' ...' if len(_modules(self.unused)) > SHOWN else ''})")
        out += [f"  note: {n}" for n in self.notes]
        return out

    def _grouped(self, status: str) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for e in self.entries:
            if e.status == status:
                groups.setdefault(e.note, [])
                module = _module(e.key)
                if module not in groups[e.note]:
                    groups[e.note].append(module)
        return groups


def _module(key: str) -> str:
    """A tensor's module, at most three names deep (``encoder.stages.4.0.convs.0.conv.weight`` -> ``encoder.stages.4``)."""
    return ".".join(key.split(".")[:3]) if key.count(".") >= 3 else key.rsplit(".", 1)[0]


def _modules(keys: list[str]) -> list[str]:
    return list(dict.fromkeys(_module(k) for k in keys))
