"""The papers behind a stage-1 checkpoint, in the form nnU-Net main prints them when it fine-tunes one
(``PretrainedTrainer.print_citations``: a list of ``{"type", "name", "apa_citations"}`` under the checkpoint's
``citations`` key, docs/interop.md)."""
from __future__ import annotations

NNUNET = ("Isensee, F., Jaeger, P. F., Kohl, S. A. A., Petersen, J., & Maier-Hein, K. H. (2021). nnU-Net: a "
          "self-configuring method for deep learning-based biomedical image segmentation. Nature Methods, 18(2), "
          "203-211.")
SPARK = ("Tian, K., Jiang, Y., Diao, Q., Lin, C., Wang, L., & Yuan, Z. (2023). Designing BERT for convolutional "
         "networks: sparse and hierarchical masked modeling (SparK). ICLR 2023.")
PRIMUS = ("Wald, T., Roy, S., Isensee, F., Ulrich, C., Ziegler, S., Trofimova, D., et al. (2025). Primus: "
          "enforcing attention usage for 3D medical image segmentation. arXiv:2503.01835.")
NNSSL = "Wald, T., et al. (2025). An OpenMind for 3D medical vision self-supervised learning. CVPR 2025."
SCHEME_PAPERS = {
    "AnatoMask": "Li, Y., et al. (2024). AnatoMask: enhancing medical image segmentation with reconstruction-guided "
                 "self-masking. ECCV 2024.",
    "RandomMask": SPARK,
    "GLMAE": "Zhuang, J., et al. (2025). Advancing volumetric medical image segmentation via global-local masked "
             "autoencoders (GL-MAE). IEEE Transactions on Medical Imaging.",
    "SelfMedHPM": "Wang, H., et al. (2023). Hard patches mining for masked image modeling (HPM). CVPR 2023.",
    "AMLP": "Wang et al. (2023). AMLP: adaptive masking lesion patches for self-supervised medical image "
            "segmentation. arXiv:2309.04312.",
}


def entry(kind: str, name: str, *papers: str) -> dict:
    return {"type": kind, "name": name, "apa_citations": list(papers)}


def stage1_citations(scheme: str, primus: bool) -> list[dict]:
    """nnU-Net, the scheme's paper, the masked-CNN method or the Primus architecture, and nnssl's recipe and
    format. A scheme without an entry in SCHEME_PAPERS is named without a paper."""
    found = [entry("Framework", "nnU-Net", NNUNET),
             entry("Pre-training method", scheme, *([SCHEME_PAPERS[scheme]] if scheme in SCHEME_PAPERS else []))]
    if primus:
        found.append(entry("Architecture", "Primus", PRIMUS))
    elif scheme != "RandomMask":  # RandomMask's own paper is SparK's
        found.append(entry("Masked pre-training of CNNs", "SparK", SPARK))
    found.append(entry("Pre-training recipe and checkpoint format", "nnssl", NNSSL))
    return found


def merged(*lists: list[dict]) -> list[dict]:
    """Citation lists joined in order, each (type, name) once (a continued checkpoint keeps its source's)."""
    seen, out = set(), []
    for items in lists:
        for item in items or []:
            key = (item.get("type"), item.get("name"))
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out
