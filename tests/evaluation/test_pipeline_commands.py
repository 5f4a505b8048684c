"""The commands the harness builds for a step (``pipeline.Run.launch``)."""
from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.protocol import SIZES

TRAINER = "nnUNetTrainerAnatoMask"


class Recorded(Run):
    """The harness with its command runner replaced by a recorder (our harness's own seam, no nnU-Net in it)."""
    def nnunet(self, log_name, args, training, results=None, pretrain_epochs=None):
        self.calls = getattr(self, "calls", []) + [[str(a) for a in args]]
        return 0.0


def test_a_resumed_pool_finetune_continues_without_pretrained_weights(tmp_path):
    """nnUNetv2_train refuses --c together with -pretrained_weights: a stopped pool fine-tuning run resumes from
    its own checkpoint only, a fresh one starts from the scheme's pool checkpoint."""
    size = SIZES["cpu-pool"]
    run = Recorded(size, str(tmp_path), [TRAINER], list(size.fractions), list(size.seeds), "cpu")
    run.launch("fresh", "train", 0, TRAINER, 0, resume=False)
    run.launch("resumed", "train", 0, TRAINER, 0, resume=True)
    fresh, resumed = run.calls
    assert "--pretrained-weights" in fresh and "--c" not in fresh
    assert "--c" in resumed and "--pretrained-weights" not in resumed
