"""The course's networks, and a registry of them by name (``get_model``)."""
from functools import partial

from pyengine.data import load_digits

from .lenet import LeNet5
from .mlp import MLP
from .registry import ModelSpec, get_model, list_models, model_spec, register_model
from .snn import SelfNormalizingMLP
from .vgg import SmallVGG

register_model("mlp", MLP, data=partial(load_digits, size=8, flatten=True),
               help="MLP 64-128-64-10 (ReLU) on 8x8 digits", sizes=(64, 128, 64, 10))
register_model("snn", SelfNormalizingMLP, data=partial(load_digits, size=8, flatten=True, normalize=True),
               help="self-normalizing MLP (SELU, AlphaDropout) on standardised 8x8 digits",
               sizes=(64, 128, 128, 128, 10), dropout=0.05)
register_model("lenet5", LeNet5, data=partial(load_digits, size=28, normalize=True),
               help="LeNet-5 on 28x28 digits")
register_model("vgg", SmallVGG, data=partial(load_digits, size=28, normalize=True),
               help="small VGG-style CNN (3x3 conv + BatchNorm blocks) on 28x28 digits")

__all__ = [
    "MLP", "SelfNormalizingMLP", "LeNet5", "SmallVGG",
    "ModelSpec", "get_model", "list_models", "model_spec", "register_model",
]
