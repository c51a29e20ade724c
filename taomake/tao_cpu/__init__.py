"""The TAO CPU venv: real NVIDIA TAO RT-DETR (nvidia-tao-pytorch) on a machine without a GPU.

`taomake setup tao-cpu` (`setup.main`) builds it; see docs/tao-cpu.md.  The `compat/` folder
is not part of this package: its files are copied into the venv's site-packages.
"""
