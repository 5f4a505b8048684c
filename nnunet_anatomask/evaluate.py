"""``python -m nnunet_anatomask.evaluate --size tiny|cpu|gpu``: every masking scheme against nnUNetTrainerScratch
across label fractions, through the real nnU-Net pipeline (see nnunet_anatomask/evaluation/harness.py)."""
from nnunet_anatomask.evaluation.harness import main

if __name__ == "__main__":
    main()
