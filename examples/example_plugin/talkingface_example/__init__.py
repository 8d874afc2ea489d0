"""An out-of-tree talkingface plugin, registered through the ``talkingface.plugins`` entry point.

It adds the dataset ``example_shapes`` (procedural cartoon faces whose mouth opens with a synthetic
voiced signal) and the model ``example_inpainter`` (a small U-Net that redraws the lower half of the
face from a reference frame and per-frame audio band energies). It is the template for writing a
plugin and what the demo runs until the built-in models land; it is not a published method.
"""
from .dataset import ExampleShapes
from .model import ExampleInpainter

__all__ = ["ExampleInpainter", "ExampleShapes"]
