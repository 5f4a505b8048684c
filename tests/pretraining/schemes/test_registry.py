"""One registration per scheme: a scheme class with a name is in SCHEMES, and its trainer, benchmark row and
evaluation row follow from that alone."""
import importlib.util
import os

import pytest

import nnunet_anatomask.trainers.registry as trainers
from nnunet_anatomask import benchmark
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes import MaskingScheme

EXT_MODULE = os.path.join(os.path.dirname(trainers.__file__), "..", "_ext_trainers", "nnunet_anatomask_trainers.py")


@pytest.fixture
def registry_snapshot():
    saved = dict(SCHEMES)
    yield
    SCHEMES.clear()
    SCHEMES.update(saved)


def test_every_scheme_has_its_trainer_in_nnunets_lookup_folder():
    assert {"RandomMask", "AnatoMask"} <= set(SCHEMES)
    spec = importlib.util.spec_from_file_location("nnunet_anatomask_trainers", EXT_MODULE)
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)  # what nnU-Net's trainer lookup imports
    for name, scheme in SCHEMES.items():
        trainer = getattr(ext, f"nnUNetTrainer{name}")
        assert trainer.scheme_class is scheme and trainer.__module__ == "nnunet_anatomask.trainers.registry"
        for row in trainers.STAGE2:  # one trainer per stage-2 row (backbone variant)
            assert f"nnUNetTrainer{name}{row.suffix}" in trainers.__all__


def test_benchmark_lists_every_scheme():
    args = benchmark.parse_args(["--synthetic", "tiny"])
    assert args.schemes == list(SCHEMES)


def test_a_named_subclass_registers_itself_once(registry_snapshot):
    class Toy(MaskingScheme):
        name = "ToyForRegistry"

    class Unnamed(Toy):  # inherits the name: an implementation detail, not a second scheme
        pass

    assert SCHEMES["ToyForRegistry"] is Toy
    trainer = trainers.scheme_trainer(Toy)
    assert trainer.__name__ == "nnUNetTrainerToyForRegistry" and trainer.scheme_class is Toy
    with pytest.raises(ValueError, match="'RandomMask' .* is taken"):
        class Clash(MaskingScheme):
            name = "RandomMask"
