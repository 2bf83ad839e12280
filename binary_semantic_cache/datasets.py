"""Real labelled questions shipped with the package, for the demo and tests.

``banking77_demo.npz`` is a stratified subset of Banking77 (Casanueva et al.,
2020, PolyAI; CC BY 4.0, see ``data/NOTICE``): 3,976 training and 1,001 test
customer queries over 77 intents, with all-MiniLM-L6-v2 embeddings (384-d,
L2-normalised, float16).
"""

from dataclasses import dataclass
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class LabelledQueries:
    """Texts, intent labels and embeddings of one split."""

    texts: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray

    def __len__(self):
        return len(self.texts)


def banking77():
    """The bundled Banking77 subset as ``(train, test)`` :class:`LabelledQueries`."""
    path = resources.files(__package__) / "data" / "banking77_demo.npz"
    with resources.as_file(path) as file, np.load(file) as data:
        split = data["split"]
        return tuple(
            LabelledQueries(data["texts"][split == name], data["labels"][split == name],
                            data["embeddings"][split == name].astype(np.float32))
            for name in ("train", "test"))
