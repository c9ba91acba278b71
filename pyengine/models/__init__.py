"""The course's networks, and a registry of them by name (``get_model``)."""
from functools import partial

from pyengine.data import load_digits
from pyengine.data.sequence_tasks import majority_dataset
from pyengine.data.text import default_corpus, report_language_model, text_windows

from .charrnn import CharRNN
from .encoder_classifier import EncoderClassifier
from .gpt import GPT
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


def _on_corpus(cls):
    """A factory whose vocab_size defaults to the bundled text's (read on first call)."""
    return lambda **kw: cls(**{"vocab_size": default_corpus().vocab_size, **kw})


register_model("charrnn", _on_corpus(CharRNN), data=text_windows,
               help="character LSTM language model on the bundled Python docs text",
               after_train=partial(report_language_model, "charrnn"), embed_dim=32, hidden_size=128)
register_model("gpt", _on_corpus(GPT), data=text_windows,
               help="small GPT (2 layers, d 64, context 64) on the bundled Python docs text",
               after_train=partial(report_language_model, "gpt"), block_size=64, n_layer=2, n_head=4, n_embd=64)
register_model("transformer-classifier", EncoderClassifier, data=majority_dataset,
               help="BERT-style encoder classifier on the synthetic majority-token task",
               vocab_size=4, num_classes=4, max_len=16)

__all__ = [
    "MLP", "SelfNormalizingMLP", "LeNet5", "SmallVGG", "CharRNN", "GPT", "EncoderClassifier",
    "ModelSpec", "get_model", "list_models", "model_spec", "register_model",
]
