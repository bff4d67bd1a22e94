"""jsnn: adversarially robust spiking neural networks in JAX.

The public API is curated here; every name is defined in its own module.
"""

from jsnn import xla_options

xla_options.apply()  # before any JAX backend starts: XLA reads XLA_FLAGS once (jsnn/xla_options.py)
xla_options.apply_malloc()  # malloc thresholds for XLA's buffers (jsnn/xla_options.py)

from jsnn import attacks, certify, data, defenses, encoding, layers, models, neuron, parallel, surrogate
from jsnn.layers import EncoderConfig
from jsnn.models import get_model, with_estimator
from jsnn.neuron import DLIF, IF, LIF, NeuronConfig, dlif, if_neuron, lif
from jsnn.surrogate import Surrogate, spike

__version__ = "0.1.0"

__all__ = [
    "attacks", "certify", "data", "defenses", "encoding", "layers", "models", "neuron", "parallel", "surrogate",
    "xla_options",
    "DLIF", "IF", "LIF", "EncoderConfig", "NeuronConfig",
    "get_model", "with_estimator", "dlif", "if_neuron", "lif", "Surrogate", "spike",
]
