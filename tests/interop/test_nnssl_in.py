"""Theirs in, through our trainers: an nnssl-format checkpoint continued in stage 1 and fine-tuned in stage 2, on a
copy of the planned demo dataset (nnUNetv2_plan_like_pretrained and nnUNetv2_preprocess are the real CLIs; the
trainers are nnU-Net trainer objects built as nnUNetv2_train builds them). The whole chain through the real
nnUNetv2_pretrain / nnUNetv2_train, and the Primus fixture, are in test_nnssl_in_slow.py."""
import json
import os
import shutil

import pytest
import torch

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.export import export
from nnunet_anatomask.interop.architectures import build
from nnunet_anatomask.trainers.registry import nnUNetTrainerAnatoMask, nnUNetTrainerFinetune, nnUNetTrainerRandomMask
from tests.conftest import Planned, run_cli
from tests.interop import nnssl_fixtures as fx
from tests.trainers.helpers import load_weights_only, make_trainer, stage1_log_text, stage2_log_text

PLANS = "nnUNetPlans_pretrained"


def copy_planned(planned: Planned, root) -> Planned:
    """The planned dataset under another root: what these tests add to it stays out of the shared fixture."""
    copy = Planned(root, planned.dataset_id, planned.name)
    shutil.copytree(planned.raw, copy.raw)
    shutil.copytree(planned.preprocessed, copy.preprocessed)
    return copy


@pytest.fixture(scope="module")
def resenc_target(demo3d, tmp_path_factory):
    """(planned copy, fixture path): the ResEnc fixture's plans written by nnUNetv2_plan_like_pretrained and the
    data preprocessed with them by nnU-Net's nnUNetv2_preprocess."""
    root = tmp_path_factory.mktemp("like_pretrained")
    planned = copy_planned(demo3d, root)
    path = fx.save(fx.resenc_checkpoint(), root / "resenc_nnssl.pth")
    env = planned.env(str(root / "results"))
    out = run_cli(["nnUNetv2_plan_like_pretrained", "-d", planned.dataset_id, "-pc", path], env).stdout
    assert "spacing: [1.0, 1.0, 1.0], the checkpoint's pretraining spacing (-spacing checkpoint" in out
    assert f"nnUNetv2_preprocess -d {planned.dataset_id} -c 3d_fullres -plans_name {PLANS}" in out
    run_cli(["nnUNetv2_preprocess", "-d", planned.dataset_id, "-c", "3d_fullres", "-plans_name", PLANS, "-np", 1],
            env)
    return planned, path


def expected_line(source: str) -> str:
    """The report's first line for the fixture's network, counted independently: unique tensors of its stem, its
    encoder stages, and the rest of a 2-class network."""
    arch = fx.resenc_checkpoint()["nnssl_adaptation_plan"]["architecture_plans"]
    network = build(arch, 1, 2, [32, 32, 32], deep_supervision=True)
    count = lambda module: len({v.data_ptr() for v in module.state_dict().values()})  # noqa: E731
    stem, encoder, total = count(network.encoder.stem), count(network.encoder.stages), count(network)
    return (f"Transfer report: {source} -> this network (transfer strict, loading encoder): {stem + encoder} tensors "
            f"transferred (stem {stem}, encoder {encoder}, decoder 0), {total - stem - encoder} left at their fresh "
            f"start; tensors per part:")


def assert_encoder_from(state: dict, ckpt: dict) -> None:
    weights = ckpt["network_weights"]
    for key, tensor in state.items():
        if key.startswith("encoder."):
            assert torch.equal(tensor.cpu(), weights[fx.PREFIX + key]), key


def test_plans_hold_the_checkpoints_network_and_pretrain_info(resenc_target):
    planned, path = resenc_target
    plans = planned.plans(PLANS)
    config = plans["configurations"]["3d_fullres"]
    assert config["architecture"]["network_class_name"].endswith("unet.ResidualEncoderUNet")
    assert config["architecture"]["arch_kwargs"] == fx.RESENC_KWARGS
    assert config["data_identifier"] == f"{PLANS}_3d_fullres" and list(plans["configurations"]) == ["3d_fullres"]
    info = plans["pretrain_info"]
    assert info["checkpoint_path"] == path and info["key_to_encoder"] == "model.encoder.stages"
    assert info["pt_used_patchsize"] == [32, 32, 32] and info["citations"][0]["name"] == "Fixture MAE"


def test_stage1_continues_from_the_checkpoint_the_plans_name(resenc_target, monkeypatch, tmp_path):
    """A scheme trainer with these plans starts stage 1 from the fixture: the log reports the counts, the
    checkpoint records where it started and keeps the fixture's citation, and AnatoMask's EMA teacher (momentum
    0.999, 1 step) is the fixture's encoder to 1e-2, which it is only if the student was loaded before the
    scheme copied it. Mutation caught: initial weights loaded after the scheme is built (random teacher)."""
    planned, path = resenc_target
    for knob, value in {"pretrain_epochs": "1", "iters_per_epoch": "1"}.items():
        monkeypatch.setenv(f"nnUNet_anatomask_{knob}", value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(planned, nnUNetTrainerAnatoMask, monkeypatch, tmp_path, plans=planned.plans(PLANS),
                           fold="all")
    final = trainer.run_pretraining()
    assert expected_line(f"initial checkpoint {path}") in stage1_log_text(trainer.output_folder)
    ckpt, source = load_weights_only(final), fx.resenc_checkpoint()
    assert ckpt["initial_weights"]["path"] == path
    assert "Fixture MAE" in [c["name"] for c in ckpt["citations"]]
    teacher = {k[len("teacher.network."):]: v for k, v in ckpt["scheme_state"]["scheme"].items()
               if k.startswith("teacher.network.encoder.")}
    for key, tensor in teacher.items():
        reference = source["network_weights"][fx.PREFIX + key]
        assert (tensor - reference).abs().max() < 1e-2 * max(1.0, reference.abs().max().item()), key


def test_finetune_loads_the_checkpoint_the_plans_name(resenc_target, monkeypatch, tmp_path):
    """nnUNetTrainerFinetune with these plans and no -pretrained_weights: when its training starts, stem and encoder
    are the fixture's, and the log has the tensor counts and the checkpoint's citation (the first step is stopped
    by a 0-epoch budget: nnU-Net's loop then ends at once)."""
    planned, path = resenc_target
    trainer = make_trainer(planned, nnUNetTrainerFinetune, monkeypatch, tmp_path, plans=planned.plans(PLANS))
    trainer.initialize()
    assert "transferred" not in stage2_log_text(trainer.output_folder)  # not at initialize(): --val never loads it
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer.num_epochs = 0
    trainer.run_training()
    assert_encoder_from(trainer.network.state_dict(), fx.resenc_checkpoint())
    log = stage2_log_text(trainer.output_folder)
    assert expected_line(f"pretrained checkpoint {path} (named by the plans)") in log
    assert "Please cite (Pre-training method 'Fixture MAE'): Fixture (2026)." in log


def plans_without_checkpoint(planned: Planned, name: str) -> str:
    """The plans nnUNetv2_plan_like_pretrained wrote (the checkpoint's network, the same preprocessed data) under
    another name and without ``pretrain_info``: plans that name no checkpoint."""
    plans = planned.plans(PLANS)
    plans.pop("pretrain_info")
    plans["plans_name"] = name
    with open(os.path.join(planned.preprocessed, planned.dataset_name, name + ".json"), "w") as f:
        json.dump(plans, f)
    return name


def test_finetune_takes_it_through_the_setting(resenc_target, monkeypatch, tmp_path):
    """nnUNet_anatomask_pretrained_weights=<nnssl checkpoint> with nnUNetTrainerFinetune on plans with the
    checkpoint's network that name no checkpoint: nothing loads at initialize() (--val never loads it); when
    training starts, stem and encoder are the fixture's and the fold's log has the counts (stem, encoder, decoder
    0, the rest fresh: the decoder, as nnssl loads), why the decoder is fresh, and the checkpoint's citation (the
    first step is stopped by a 0-epoch budget). The real CLI: test_nnssl_in_slow.py. Mutation caught: the report
    printed but the weights not loaded."""
    planned, path = resenc_target
    plans = plans_without_checkpoint(planned, "nnUNetPlans_resencNoCkpt")
    monkeypatch.setenv("nnUNet_anatomask_pretrained_weights", path)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(planned, nnUNetTrainerFinetune, monkeypatch, tmp_path, plans=planned.plans(plans))
    trainer.initialize()
    assert "transferred" not in stage2_log_text(trainer.output_folder)
    trainer.num_epochs = 0
    trainer.run_training()
    assert_encoder_from(trainer.network.state_dict(), fx.resenc_checkpoint())
    log = stage2_log_text(trainer.output_folder)
    assert expected_line(f"nnUNet_anatomask_pretrained_weights={path}") in log
    assert "  fresh (decoder: loading the encoder only): decoder.stages.0, decoder.stages.1" in log
    assert "Please cite (Pre-training method 'Fixture MAE'): Fixture (2026)." in log


def test_setting_with_another_network_says_what_differs_and_both_fixes(resenc_target, monkeypatch, tmp_path):
    """The setting with the dataset's own plans (PlainConvUNet): strict stops at initialize() with the differences,
    the plans route and the adapting transfer; adapting, none of the ResEnc's tensors fits (other names and
    widths), which is said with the plans route."""
    planned, path = resenc_target
    monkeypatch.setenv("nnUNet_anatomask_pretrained_weights", path)
    trainer = make_trainer(planned, nnUNetTrainerFinetune, monkeypatch, tmp_path)
    with pytest.raises(CheckpointError) as info:
        trainer.initialize()
    message = str(info.value)
    assert message.startswith(f"nnUNet_anatomask_pretrained_weights={path} does not fit this network: ")
    assert "The checkpoint's network is ResidualEncoderUNet" in message and "nnUNetv2_plan_like_pretrained" in message
    assert message.endswith("Or set nnUNet_anatomask_transfer=adapt to load what fits and start the rest fresh.")
    monkeypatch.setenv("nnUNet_anatomask_transfer", "adapt")
    adapting = make_trainer(planned, nnUNetTrainerFinetune, monkeypatch, tmp_path / "adapt")
    with pytest.raises(CheckpointError, match=r"no tensor of its stem and encoder fits this network, even adapted\. "
                                              r"The checkpoint's network is ResidualEncoderUNet.*-plans_name P, then "
                                              r"train with -p P\.$"):
        adapting.initialize()


def test_other_architecture_says_what_differs_and_gives_the_command(resenc_target, monkeypatch, tmp_path):
    """Stage 1 on the dataset's own plans (PlainConvUNet) from the ResEnc fixture, without the planning step."""
    planned, path = resenc_target
    trainer = make_trainer(planned, nnUNetTrainerRandomMask, monkeypatch, tmp_path, fold="all")
    with pytest.raises(CheckpointError) as info:
        trainer.stage1.build(path)
    message = str(info.value)
    assert "The checkpoint's network is ResidualEncoderUNet (n_stages 4, features_per_stage [8, 16, 32, 32]" in message
    assert "this run's is PlainConvUNet" in message and "network: ResidualEncoderUNet vs PlainConvUNet" in message
    assert message.endswith(f"nnUNetv2_plan_like_pretrained -d Dataset990_Demo -c 3d_fullres -pc {path} (it prints "
                            "the plans name P), nnUNetv2_preprocess -d Dataset990_Demo -c 3d_fullres -plans_name P, "
                            "then train with -p P.")


def test_wrong_key_gives_a_message_not_a_traceback(resenc_target, tmp_path):
    """The real nnUNetv2_pretrain -pretrained_weights with the fixture whose plan names a wrong encoder key."""
    planned, _ = resenc_target
    bad = fx.save(fx.with_wrong_key(fx.resenc_checkpoint()), tmp_path / "bad.pth")
    proc = run_cli(["nnUNetv2_pretrain", planned.dataset_id, "3d_fullres", "all", "-p", PLANS, "-tr",
                    "nnUNetTrainerRandomMask", "-device", "cpu", "-pretrained_weights", bad],
                   planned.train_env(tmp_path / "results"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "key_to_encoder 'model.encoder.stage' names no tensor of the checkpoint (its tensors begin with " \
           "model.encoder.stages, model.encoder.stem)" in proc.stderr


def test_export_gives_nnunets_loader_a_full_network(resenc_target, monkeypatch, tmp_path):
    """nnUNetv2_export_pretrained from an nnssl-format checkpoint: the file holds every tensor of the target's
    network (nnU-Net's own -pretrained_weights takes it), stem and encoder from the fixture."""
    planned, path = resenc_target
    for name, value in (("nnUNet_raw", planned.raw), ("nnUNet_preprocessed", planned.preprocessed),
                        ("nnUNet_results", str(tmp_path))):
        monkeypatch.setenv(name, value)
    kept = export(path, str(planned.dataset_id), "3d_fullres", "nnUNetTrainerScratch", PLANS, str(tmp_path / "out.pth"))
    weights = load_weights_only(str(tmp_path / "out.pth"))["network_weights"]
    assert_encoder_from({k: v for k, v in weights.items() if k.startswith("encoder.")}, fx.resenc_checkpoint())
    assert kept and all(k.startswith("decoder.") for k in kept)


def test_continue_resumes_from_latest_not_from_the_initial_checkpoint(resenc_target, monkeypatch, tmp_path):
    """--c after an interruption: the run resumes from checkpoint_latest.pth (its epoch, its weights), the initial
    checkpoint is not loaded again, and the final checkpoint still names where stage 1 started. The interruption
    is a latest checkpoint written by the runner's own save() after building from the fixture, with weights set
    to a value no initialisation gives. Mutation caught: the initial weights loaded over a resumed run."""
    planned, path = resenc_target
    for knob, value in {"pretrain_epochs": "2", "iters_per_epoch": "1", "save_every": "1"}.items():
        monkeypatch.setenv(f"nnUNet_anatomask_{knob}", value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    first = make_trainer(planned, nnUNetTrainerRandomMask, monkeypatch, tmp_path, plans=planned.plans(PLANS),
                         fold="all")
    runner = first.stage1
    runner.build(path)
    with torch.no_grad():
        runner.model.network.encoder.stem.convs[0].conv.weight.fill_(0.123)
    runner.current_epoch = 1
    os.makedirs(runner.folder, exist_ok=True)
    runner.save(runner.latest_checkpoint)
    resumed = make_trainer(planned, nnUNetTrainerRandomMask, monkeypatch, tmp_path, plans=planned.plans(PLANS),
                           fold="all", continue_training=True)
    final = load_weights_only(resumed.run_pretraining())
    log = stage1_log_text(resumed.output_folder)
    assert "Resuming stage 1 (RandomMask)" in log and "at epoch 1" in log
    assert log.count(f"initial checkpoint {path}") == 0
    assert final["current_epoch"] == 2 and final["initial_weights"]["path"] == path
    stem = final["network_weights"]["encoder.stem.convs.0.conv.weight"]
    assert (stem - 0.123).abs().max() < 0.01  # one AdamW step (lr <= 1e-4) from the resumed value
