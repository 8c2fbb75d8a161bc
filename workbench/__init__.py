"""workbench: deploy ML models as HTTP APIs on the GPU machines you already have."""

__version__ = "0.1.0"
