"""Evaluation harness: a real-anatomy downstream dataset (anatomy_dataset) and the scheme-vs-scratch benchmark
through the real nnU-Net pipeline (harness). Entry point: ``python -m nnunet_anatomask.evaluate``."""
