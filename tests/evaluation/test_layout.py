"""Where each arm's runs live: a run without stage-1 factors or a pool keeps every folder it always had; a longer
stage 1 and a pool get results roots of their own (nnU-Net names model folders by trainer only)."""
import os

from nnunet_anatomask.evaluation.layout import Layout, arm_name, split_arm

RM, SCRATCH, FINETUNE = "nnUNetTrainerRandomMask", "nnUNetTrainerScratch", "nnUNetTrainerFinetune"


def test_arm_names():
    assert arm_name(RM) == RM and arm_name(RM, 10) == RM + "_x10" and arm_name(RM, 2.5) == RM + "_x2.5"
    assert split_arm(RM + "_x10") == (RM, 10.0) and split_arm(RM) == (RM, 1.0)
    assert split_arm("nnUNetTrainerAnatoMask_PrimusM") == ("nnUNetTrainerAnatoMask_PrimusM", 1.0)


def test_factor_one_keeps_the_old_folders():
    lay = Layout("/o", "Dataset981_B", "P", "2d")
    assert lay.fold_dir(RM, 3) == "/o/nnUNet_results/Dataset981_B/nnUNetTrainerRandomMask__P__2d/fold_3"
    assert lay.stage1_checkpoint(RM) == ("/o/nnUNet_results/Dataset981_B/nnUNetTrainerRandomMask__P__2d/fold_all/"
                                         "pretraining/checkpoint_final.pth")
    assert lay.pred_dir(RM, 3) == "/o/predictions/nnUNetTrainerRandomMask/fold_3"


def test_a_longer_stage1_has_its_own_root_for_both_stages():
    lay = Layout("/o", "Dataset981_B", "P", "2d")
    arm = arm_name(RM, 10)
    assert lay.stage1_checkpoint(arm).startswith("/o/stage1_x10/nnUNet_results/Dataset981_B/"
                                                 "nnUNetTrainerRandomMask__P__2d/fold_all/")
    assert lay.fold_dir(arm, 0) == "/o/stage1_x10/nnUNet_results/Dataset981_B/nnUNetTrainerRandomMask__P__2d/fold_0"
    assert lay.pred_dir(arm, 0) == "/o/predictions/nnUNetTrainerRandomMask_x10/fold_0"
    assert lay.stage2_results(SCRATCH) == "/o/nnUNet_results"


def test_a_pool_pretrains_on_the_pool_and_finetunes_each_scheme_apart():
    lay = Layout("/o", "Dataset983_B", "P", "2d", pool_dataset="Dataset970_Pool")
    assert lay.stage1_dir(arm_name(RM, 10)) == os.path.join(
        "/o/stage1_x10/nnUNet_results/Dataset970_Pool/nnUNetTrainerRandomMask__P__2d/fold_all/pretraining")
    assert lay.stage2_trainer(RM) == FINETUNE and lay.stage2_trainer(SCRATCH) == SCRATCH
    assert lay.fold_dir(RM, 1) == "/o/finetune_nnUNetTrainerRandomMask/nnUNet_results/Dataset983_B/" \
                                  "nnUNetTrainerFinetune__P__2d/fold_1"
    assert lay.fold_dir(SCRATCH, 1) == "/o/nnUNet_results/Dataset983_B/nnUNetTrainerScratch__P__2d/fold_1"


def test_a_recipe_arm_shares_its_schemes_stage1():
    """A recipe is a trainer suffix: its stage 1 is the scheme's (with any factor), its stage-2 runs its own; with a
    pool the recipe goes to nnUNetTrainerFinetune."""
    lay = Layout("/o", "Dataset981_B", "P", "2d")
    for factor in (1, 10):
        arm = arm_name(RM + "_nnssl", factor)
        assert lay.stage1_dir(arm) == lay.stage1_dir(arm_name(RM, factor))
        assert lay.fold_dir(arm, 0).endswith("nnUNetTrainerRandomMask_nnssl__P__2d/fold_0")
    pool = Layout("/o", "Dataset983_B", "P", "2d", pool_dataset="Dataset970_Pool")
    assert pool.stage2_trainer(RM + "_frozenEnc") == FINETUNE + "_frozenEnc"
    assert pool.stage1_dir(RM + "_frozenEnc") == pool.stage1_dir(RM)
