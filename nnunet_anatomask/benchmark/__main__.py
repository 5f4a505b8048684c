"""python -m nnunet_anatomask.benchmark: see the package docstring."""
from nnunet_anatomask.benchmark.cli import main

main()
