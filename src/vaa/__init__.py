"""vaa: Enhancing sentence-matching models with vulnerability via adversarial attack.

Zhang et al., COLING 2020. Stage one trains model A; an FGSM attack on A's word
embeddings measures each pair's vulnerability; stage two trains model B with the
projected vulnerability vector fed in along with the word embeddings.

    import vaa
    model = vaa.load("runs/qqp-a")          # a trained model, loaded once
    model.predict([("how do i cook rice ?", "how to cook rice ?")])
"""

from __future__ import annotations

import logging
from typing import Any

__version__ = "0.1.0"

# the library logs (one logger per module) and never configures logging: without
# a configuration nothing is printed; `vaa` (the CLI) configures it (log_setup.py)
logging.getLogger(__name__).addHandler(logging.NullHandler())

# loaded on first use, so that `import vaa` stays cheap (torch is imported by these)
_EXPORTS = {
    "load": "inference",
    "load_model": "inference",
    "predict": "inference",
    "evaluate": "inference",
    "calibrate": "inference",
    "train": "stage_one",
    "train_vaa": "stage_two",
    "reproduce": "experiments",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'vaa' has no attribute {name!r}")
