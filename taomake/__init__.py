"""taomake: build NVIDIA TAO RT-DETR pipelines from one project.yaml."""

__version__ = "0.1.0"
