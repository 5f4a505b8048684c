"""The real-anatomy dataset builder: a few coarse subjects from whichever template package is installed
(mricron-data and/or nilearn; each test is skipped with the install command when its source is missing), the
deformation generator on a toy template, and the message when nothing is installed."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anatomask.evaluation import anatomy_dataset as ad
from nnunet_anatomask.evaluation import anatomy_labels
from nnunet_anatomask.evaluation import anatomy_sources as sources
from nnunet_anatomask.evaluation import anatomy_synthesis as synthesis

SOURCES = sources.available_sources()
needs_mricron = pytest.mark.skipif(not SOURCES["mricron"], reason="mricron-data not installed "
                                   "(apt-get install mricron-data): Colin27 + AAL templates absent")
needs_nilearn = pytest.mark.skipif(not SOURCES["nilearn"], reason="nilearn not installed (pip install nilearn): "
                                   "ICBM152 2009 template absent")


def read(path):
    img = sitk.ReadImage(path)
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing()))


def check_dataset(folder, num_train, num_test, num_labels):
    ds = json.load(open(os.path.join(folder, "dataset.json")))
    assert ds["numTraining"] == num_train and ds["file_ending"] == ".nii.gz"
    assert sorted(ds["labels"].values()) == list(range(num_labels + 1))
    for split, n in (("Tr", num_train), ("Ts", num_test)):
        images = sorted(os.listdir(os.path.join(folder, f"images{split}")))
        labels = sorted(os.listdir(os.path.join(folder, f"labels{split}")))
        assert len(images) == len(labels) == n and all(f.endswith("_0000.nii.gz") for f in images)
        for img_f, lab_f in zip(images, labels):
            img, sp_i = read(os.path.join(folder, f"images{split}", img_f))
            lab, sp_l = read(os.path.join(folder, f"labels{split}", lab_f))
            assert img.shape == lab.shape and sp_i == pytest.approx(sp_l)
            assert np.isfinite(img).all() and img.max() > 100
            assert set(np.unique(lab)) <= set(range(num_labels + 1)) and len(np.unique(lab)) >= 2
    return json.load(open(os.path.join(folder, "provenance.json")))


@needs_mricron
def test_lobes(tmp_path):
    folder = ad.build_anatomy_dataset(str(tmp_path), 901, "Lobes", num_train=2, num_test=1, spacing=4.0,
                                      label_set="lobes", log=lambda m: None)
    prov = check_dataset(folder, 2, 1, len(anatomy_labels.LOBES))
    assert prov["complete"] and prov["templates"]["train"] == ["colin27"]
    lab, _ = read(os.path.join(folder, "labelsTr", "brain_000.nii.gz"))
    assert len(np.unique(lab)) == len(anatomy_labels.LOBES) + 1  # every structure survives at 4 mm
    if SOURCES["nilearn"]:
        assert prov["templates"]["test"] == ["icbm152"] and "held-out" in prov["leak"]
    else:
        assert prov["templates"]["test"] == ["colin27"] and prov["leak"].startswith("LEAK")
    # resumable and guarded: same settings return at once, other settings are refused
    assert ad.build_anatomy_dataset(str(tmp_path), 901, "Lobes", 2, 1, 4.0, "lobes", log=None) == folder
    with pytest.raises(RuntimeError, match="other settings"):
        ad.build_anatomy_dataset(str(tmp_path), 901, "Lobes", 3, 1, 4.0, "lobes", log=lambda m: None)


@needs_mricron
def test_lobes_same_template_states_the_leak(tmp_path):
    folder = ad.build_anatomy_dataset(str(tmp_path), 902, "LobesSame", num_train=1, num_test=1, spacing=4.0,
                                      label_set="lobes", test_template="same", log=lambda m: None)
    prov = json.load(open(os.path.join(folder, "provenance.json")))
    assert prov["templates"]["test"] == ["colin27"] and prov["leak"].startswith("LEAK")
    assert "LEAK" in json.load(open(os.path.join(folder, "dataset.json")))["description"]


@needs_nilearn
def test_tissue(tmp_path):
    folder = ad.build_anatomy_dataset(str(tmp_path), 903, "Tissue", num_train=1, num_test=1, spacing=4.0,
                                      label_set="tissue", log=lambda m: None)
    prov = check_dataset(folder, 1, 1, 2)
    assert prov["templates"] == {"train": ["icbm152"], "test": ["icbm152"]} and prov["leak"].startswith("LEAK")


def test_aal_groups_cover_aal_names(tmp_path):
    txt = tmp_path / "aal.nii.txt"
    txt.write_text("1 Precentral_L 2001\n2 Temporal_Pole_Sup_R 2002\n3 Cerebelum_Crus1_L 9001\n"
                   "4 Vermis_1_2 9100\n5 Thalamus_R 7102\n6 Unknown_L 1\n")
    lut = anatomy_labels._aal_groups(str(txt))
    names = list(anatomy_labels.LOBES)
    assert [names[v - 1] if v else None for v in lut[1:7]] == \
        ["frontal", "temporal", "cerebellum", "cerebellum", "central", None]


def test_subject_generator_on_a_toy_template():
    z, y, x = np.mgrid[:40, :48, :44]
    ball = ((z - 20) ** 2 + (y - 24) ** 2 + (x - 22) ** 2) < 15 ** 2
    inner = ((z - 20) ** 2 + (y - 24) ** 2 + (x - 22) ** 2) < 7 ** 2
    t = anatomy_labels.Template("toy", np.where(inner, 200.0, np.where(ball, 100.0, 0.0)).astype(np.float32),
                    (ball.astype(np.uint8) + inner), (1.0, 1.0, 1.0), "toy", "toy")
    a = synthesis.make_subject(t, 2.0, np.random.default_rng(0))
    b = synthesis.make_subject(t, 2.0, np.random.default_rng(0))
    c = synthesis.make_subject(t, 2.0, np.random.default_rng(1))
    img, lab, sp = a
    assert np.array_equal(img, b[0]) and np.array_equal(lab, b[1])  # deterministic from the seed
    assert not np.array_equal(lab, c[1]) or not np.array_equal(img, c[0])
    assert img.dtype == np.float32 and lab.dtype == np.uint8 and img.shape == lab.shape
    assert all(1.8 < s < 3.2 for s in sp) and sorted(np.unique(lab)) == [0, 1, 2]
    # intensities follow the labels: the deformed label map and image stay in register
    assert img[lab == 2].mean() > img[lab == 1].mean() > img[lab == 0].mean()


def test_nothing_installed_names_both_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MRICRON_DIRS", ())
    monkeypatch.delenv(sources.MRICRON_ENV, raising=False)
    monkeypatch.setattr(sources, "find_nilearn_dir", lambda explicit=None: None)
    with pytest.raises(SystemExit) as e:
        ad.main(["--raw", str(tmp_path)])
    assert "apt-get install mricron-data" in str(e.value) and "pip install nilearn" in str(e.value)
    assert not os.listdir(tmp_path)  # nothing written
    with pytest.raises(sources.SourceMissing, match="apt-get install mricron-data"):
        anatomy_labels.load_templates("lobes", {"mricron": None, "nilearn": "x"})
    with pytest.raises(sources.SourceMissing, match="pip install nilearn"):
        anatomy_labels.load_templates("tissue", {"mricron": "x", "nilearn": None})


def test_lobar_volumes_fill_the_brain_by_the_nearest_aal_group(tmp_path):
    """The one rule for every template: each brain voxel takes the group of the nearest AAL voxel, AAL read
    through world coordinates. Catches labels kept only where AAL itself is (the old grey-matter rule), voxels
    outside the brain labelled, and AAL read on the voxel grid instead of in world space."""
    (tmp_path / "aal.nii.txt").write_text("1 Frontal_Sup_L 2101\n2 Occipital_Sup_L 5101\n")
    aal = np.zeros((4, 4, 16), np.uint8)
    aal[:, :, 3], aal[:, :, 12] = 1, 2          # frontal at AAL x = 3, occipital at AAL x = 12
    aal_img = sitk.GetImageFromArray(aal)
    aal_img.SetOrigin((-2.0, 0.0, 0.0))         # AAL's grid starts 2 mm before the template's: world x 1 and 10
    sitk.WriteImage(aal_img, str(tmp_path / "aal.nii.gz"))
    template = sitk.GetImageFromArray(np.zeros((4, 4, 12), np.float32))
    brain = np.zeros((4, 4, 12), bool)
    brain[:, :, 1:10] = True                    # template x = 1..9 is brain
    labels = anatomy_labels._lobar_volumes(template, brain, str(tmp_path))
    frontal, occipital = list(anatomy_labels.LOBES).index("frontal") + 1, list(anatomy_labels.LOBES).index("occipital") + 1
    # nearest of world x 1 (frontal) and 10 (occipital); on AAL's voxel grid occipital would fall outside
    assert list(labels[0, 0]) == [0] + [frontal] * 5 + [occipital] * 4 + [0, 0]
    assert (labels[~brain] == 0).all()
