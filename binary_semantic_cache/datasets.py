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


def fow_cache_pairs():
    """The bundled fow_cache question pairs (CC BY 4.0, Mabon ap Gwyn; see ``data/NOTICE``).

    A dict of arrays: ``a``, ``b`` (texts), ``category`` (``paraphrase``,
    ``near_repeat``, or a trap: ``negation``, ``entity_swap``, ``number_date``,
    ``scope``), ``same_answer``, and ``embeddings_a``/``embeddings_b``
    (all-MiniLM-L6-v2, float32).
    """
    path = resources.files(__package__) / "data" / "fow_cache_pairs.npz"
    with resources.as_file(path) as file, np.load(file) as data:
        pairs = {name: data[name] for name in data.files}
    for name in ("embeddings_a", "embeddings_b"):
        pairs[name] = pairs[name].astype(np.float32)
    return pairs


def load_labelled(path):
    """A user's labelled file: ``("clusters", (train, test))`` or ``("pairs", dict)``.

    Clusters: ``embeddings`` (n, dim), ``labels`` (n,), ``split`` (n,) of
    "train"/"test". Pairs: ``embeddings_a``, ``embeddings_b`` (n, dim),
    ``same_answer`` (n,), optionally ``category`` (n,).
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a .npz file of arrays ({type(exc).__name__}); save yours "
                         "with numpy.savez(path, embeddings=..., labels=..., split=...), see "
                         "docs/quality.md") from None
    if not hasattr(archive, "files"):
        raise ValueError(f"{path}: a single .npy array; expected a .npz file of named arrays "
                         "(numpy.savez), see docs/quality.md")
    with archive as data:
        keys = set(data.files)
        if {"embeddings", "labels", "split"} <= keys:
            split = data["split"]
            return "clusters", tuple(
                LabelledQueries(np.array([""] * int((split == s).sum())), data["labels"][split == s],
                                data["embeddings"][split == s].astype(np.float32))
                for s in ("train", "test"))
        if {"embeddings_a", "embeddings_b", "same_answer"} <= keys:
            return "pairs", {name: data[name] for name in data.files}
    raise ValueError(f"{path}: expected arrays embeddings/labels/split (clusters) or "
                     f"embeddings_a/embeddings_b/same_answer (pairs), got {sorted(keys)}")
