# Flat re-export folder for nnU-Net v2's trainer lookup. Keep exactly this one, uniquely named module here and
# NO __init__.py.
#
# Why: nnU-Net 2.8.1 has no plugin entry point. It searches its own trainer folder and then every folder in
# the env var nnUNet_extTrainer (set for you by nnunet_anatomask_hook via nnunet_anatomask.pth), putting the
# folder first on sys.path and importing each module found there as a TOP-LEVEL module, then purging those
# modules (nnunetv2/utilities/find_objects.py, find_class_by_name.py). A module in this folder therefore must
# have a name that cannot clash with anything else on sys.path, and must not define the classes itself: they
# are defined in nnunet_anatomask.trainers.registry and only re-exported here, so their __module__ is
# "nnunet_anatomask.trainers..." - importable by that name in any process (pickling, multiprocessing
# workers, inference) and untouched by nnU-Net's purge of this folder's modules.
from nnunet_anatomask.trainers.registry import *  # noqa: F401,F403
