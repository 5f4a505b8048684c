"""Re-records named cases of tests/data/scheme_identity.json from the current code, for a change of a scheme's
behaviour made on purpose (the other cases keep their record from before the seams refactor, see
record_scheme_identity.py). It replays each case exactly as tests/pretraining/schemes/test_identity.py does:

    PYTHONPATH=. .venv/bin/python tests/data/rerecord_scheme_identity.py AMLP AMLP_intensity ...

Re-recorded so far: AMLP, AMLP_intensity, AMLP_encoder, AMLP_no_arl, AMLP_no_ccl, AMLP_no_amr after MPS drew its
background cells in the order of their lesion-likeness (issue 22, docs/amlp.md). AMLP_random_background is the old
"AMLP" record: with the background drawn at random the new code repeats the old masks, losses and state.
"""
import json
import os
import sys

import torch

from tests.data.record_scheme_identity import CASES
from tests.pretraining.schemes.test_identity import DATA, replay


def main(cases: list[str]) -> None:
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; the cases are {list(CASES)}")
    torch.set_num_threads(1)
    with open(DATA) as f:
        recorded = json.load(f)
    for case in cases:
        for backbone in ("cnn", "primus"):
            recorded[f"{case}/{backbone}"] = replay(case, backbone)
    tmp = DATA + ".tmp"
    with open(tmp, "w") as f:
        json.dump(recorded, f, indent=1)
    os.replace(tmp, DATA)


if __name__ == "__main__":
    main(sys.argv[1:])
