"""The trainers users name with -tr (registry.py makes them; nnU-Net finds them through _ext_trainers/), stage 1's
runner, stage 2's recipes. Import the module you need; this package imports nothing itself."""
