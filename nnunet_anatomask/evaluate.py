"""``python -m nnunet_anatomask.evaluate --size tiny|cpu|gpu``: every masking scheme against nnUNetTrainerScratch
across label fractions, through the real nnU-Net pipeline (nnunet_anatomask/evaluation/, steps in pipeline.py)."""
from nnunet_anatomask.evaluation.cli import main

if __name__ == "__main__":
    main()
