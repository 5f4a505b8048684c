"""Fixed crops of preprocessed cases (trainers/fixed_crops.py): placement, padding, case order, own generator."""
import os

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_anatomask.trainers.fixed_crops import box_start, case_order, cut, fixed_crops
from tests.trainers.test_stage1_heldout import assert_rng_unchanged, global_rng


def test_boxes_inside_where_they_fit_centred_and_padded_where_not():
    rng = np.random.default_rng(0)
    assert box_start((10, 4), (4, 8), rng, centre=(9, 1)) == [6, -2]  # clipped inside; centred (2 padded each side)
    assert box_start((10, 4), (4, 8), rng, centre=(0, 3)) == [0, -2]
    starts = [box_start((10, 4), (4, 8), rng) for _ in range(200)]
    assert {s[0] for s in starts} == set(range(7)) and {s[1] for s in starts} == {-2}
    array = np.arange(12).reshape(1, 3, 4)
    assert cut(array, [-1, 2], (3, 3)).tolist() == [[[0, 0, 0], [2, 3, 0], [6, 7, 0]]]


def test_case_order_spreads_crops_over_cases():
    rng = np.random.default_rng(0)
    assert case_order(["b", "a", "c"], 7, rng) == ["a", "b", "c", "a", "b", "c", "a"]
    chosen = case_order([f"c{i}" for i in range(10)], 3, rng)
    assert len(set(chosen)) == 3 and chosen == sorted(chosen)


def test_fixed_crops_of_a_real_dataset_are_seeded_and_leave_the_global_rngs(demo3d):
    """Same seed, same crops; another seed, other crops; the foreground share centres crops on labels; the global
    torch / numpy / random streams are not drawn from. Catches: np.random instead of the crops' own generator."""
    folder = os.path.join(demo3d.preprocessed, demo3d.dataset_name, "nnUNetPlans_3d_fullres")
    dataset = infer_dataset_class(folder)(folder)
    before = global_rng()
    a = fixed_crops(dataset, 4, (24, 24, 24), seed=1, foreground_share=0.5)
    assert_rng_unchanged(before)
    b = fixed_crops(dataset, 4, (24, 24, 24), seed=1, foreground_share=0.5)
    c = fixed_crops(dataset, 4, (24, 24, 24), seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and not torch.equal(a.images, c.images)
    assert a.images.shape == (4, 1, 24, 24, 24) and a.labels.dtype == torch.int16 and len(set(a.cases)) == 4
    assert all((a.labels[k] > 0).any() for k in range(2))  # the first half: centred on a labelled voxel
