"""Answer quality on your own labelled data: ``evaluate`` configurations, ``calibrate`` a threshold.

Both replay embeddings through real caches, so what they report is what a
cache of that configuration would do. The bundled data (``datasets``) works
the same way as yours.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _quality
from ._optional import pyplot
from .datasets import LabelledQueries
from .encoder import BinaryEncoder
from .errors import MissingExtraError

#: Configurations ``evaluate`` compares by default: ``(name, code_bits, rescore)``;
#: ``code_bits`` None is exact float cosine, the reference.
CONFIGS = tuple(_quality.CONFIGS)


class CurvePoint(NamedTuple):
    """One threshold of a calibration curve."""

    threshold: float
    precision: float
    recall: float


class CurveRow(NamedTuple):
    """One threshold of an evaluation curve; rates are shares of all queries."""

    threshold: float
    hit_rate: float
    precision: float
    correct_rate: float
    wrong_rate: float
    f1: float


@dataclass(frozen=True)
class CalibrationResult:
    """The least threshold meeting a precision target, and the curve behind it.

    ``curve`` holds a :class:`CurvePoint` for every threshold tried. When no
    threshold reaches the target, ``threshold`` is the one with the best
    precision, and ``precision`` shows the shortfall.
    """

    threshold: float
    precision: float
    recall: float
    curve: list = field(repr=False)


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured, per configuration.

    ``table()`` gives one plain dict per configuration, ``to_frame()`` the
    same as a pandas DataFrame, ``curve(name)`` the rows behind a
    configuration, and ``plot()`` precision against hit rate, titled with
    ``name`` (whose data it is).
    """

    name: str
    configurations: dict = field(repr=False)

    def table(self):
        """One dict per configuration: memory, best F1, thresholds and wrong answers."""
        rows = []
        for config, r in self.configurations.items():
            t = r["thresholds_for_precision"]
            rows.append({
                "configuration": config, "bytes_per_entry": r["bytes_per_entry"],
                "best_f1": r["best_f1"], "threshold_p90": t[0.90], "threshold_p95": t[0.95],
                "threshold_p99": t[0.99],
                "wrong_at_float_p90": r.get("wrong_at_float_p90"),
                "ratio_at_float_p90": r.get("ratio_at_float_p90"),
                "wrong_at_float_p95": r.get("wrong_at_float_p95"),
                "ratio_at_float_p95": r.get("ratio_at_float_p95"),
                "inflation": r["inflation"]})
        return rows

    def curve(self, configuration):
        """The :class:`CurveRow` of every threshold for one configuration."""
        return [CurveRow(**row) for row in self.configurations[configuration]["curve"]]

    def to_frame(self):
        """``table()`` as a pandas DataFrame indexed by configuration (needs pandas)."""
        try:
            import pandas
        except ImportError:
            raise MissingExtraError("to_frame() needs pandas: pip install pandas (table() gives "
                                    "the same rows as plain dicts)") from None
        return pandas.DataFrame(self.table()).set_index("configuration")

    def plot(self, ax=None):
        """Precision against hit rate as the threshold moves; returns the Axes."""
        if ax is None:
            _, ax = pyplot().subplots(figsize=(7, 4.5))
        for config in self.configurations:
            rows = [row for row in self.curve(config) if row.hit_rate > 0]
            ax.plot([row.hit_rate for row in rows], [row.precision for row in rows],
                    label=config)
        ax.set_xlabel("hit rate")
        ax.set_ylabel("precision (correct hits / hits)")
        ax.set_title(f"{self.name}: precision against hit rate as the threshold moves")
        ax.grid(True, alpha=0.3)
        ax.legend()
        return ax

    def __repr__(self):
        lines = [f"EvaluationResult({self.name!r}):",
                 f"  {'configuration':<20}{'B/entry':>8}{'best F1':>9}{'t@P95':>7}"]
        for row in self.table():
            t95 = "-" if row["threshold_p95"] is None else f"{row['threshold_p95']:.2f}"
            lines.append(f"  {row['configuration']:<20}{row['bytes_per_entry']:>8}"
                         f"{row['best_f1']:>9.3f}{t95:>7}")
        return "\n".join(lines)


def evaluate(stored, stored_labels, queries, query_labels, *, name="your data",
             configs=CONFIGS, seed=42, rescore_k=10):
    """Replay labelled queries through caches of labelled entries, per configuration.

    Each configuration's cache holds ``stored`` with its label as the cached
    answer; every query is looked up, and a hit is correct when the answer's
    label is the query's own. Float cosine (if among ``configs``) is the
    reference the wrong-answer ratios compare against.

    Parameters
    ----------
    stored, queries : array_like, shape (n, dim) and (m, dim)
    stored_labels, query_labels : array_like, shape (n,) and (m,)
    name : str
        Whose data this is, for the table and the plot's title.
    configs : sequence of (name, code_bits, rescore)
        Default :data:`CONFIGS`; ``code_bits`` None is exact float cosine.
    seed : int
        Encoder seed.
    rescore_k : int
        Candidates rescored by configurations with ``rescore``.

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> from binary_semantic_cache import datasets, evaluate
    >>> train, test = datasets.banking77()
    >>> result = evaluate(train.embeddings, train.labels, test.embeddings, test.labels,
    ...                   name="Banking77", configs=[("float cosine", None, None),
    ...                                              ("256 bits", 256, None)])
    >>> [row["configuration"] for row in result.table()]
    ['float cosine', '256 bits']
    """
    train = _labelled(stored, stored_labels, "stored")
    test = _labelled(queries, query_labels, "queries")
    if train.embeddings.shape[1] != test.embeddings.shape[1]:
        raise ValueError(f"expected stored and queries of one dimension, got "
                         f"{train.embeddings.shape[1]} and {test.embeddings.shape[1]}")
    results = _quality.evaluate_clusters(train, test, configs=list(configs), seed=seed,
                                         rescore_k=rescore_k)
    return EvaluationResult(str(name), results)


def _labelled(embeddings, labels, what):
    x = np.asarray(embeddings, np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"expected {what} as a non-empty (n, dim) array with n labels, got "
                         f"shapes {x.shape} and {y.shape}")
    return LabelledQueries(np.array([""] * len(y)), y, x)


def calibrate(embeddings_a, embeddings_b, same_answer, *, encoder, target_precision=0.95,
              rescore=None):
    """The least threshold at which a cache's hits reach ``target_precision``.

    Each ``b[i]`` is compared with its own ``a[i]`` exactly as a cache built
    with ``encoder`` and ``rescore`` compares them (estimated cosine of the
    codes, or exact cosine of the stored copy), so the threshold fits that
    configuration: a float-cosine threshold does not carry over to codes. A
    hit is correct when ``same_answer[i]``; recall counts correct hits over
    the pairs that should hit. In a full cache a query meets its nearest of
    many entries, which pushes similarities up: ``evaluate`` measures that.

    Parameters
    ----------
    embeddings_a, embeddings_b : array_like, shape (n, dim)
    same_answer : array_like of bool, shape (n,)
    encoder : BinaryEncoder
    target_precision : float, default 0.95
    rescore : None, "int8", "float16" or "float32"

    Returns
    -------
    CalibrationResult
    """
    a, b = np.asarray(embeddings_a), np.asarray(embeddings_b)
    same = np.asarray(same_answer, bool)
    if not (a.ndim == b.ndim == 2 and a.shape == b.shape and same.shape == (a.shape[0],)):
        raise ValueError(f"expected embeddings_a and embeddings_b of one shape (n, dim) and "
                         f"same_answer of shape (n,), got {a.shape}, {b.shape}, {same.shape}")
    if not isinstance(encoder, BinaryEncoder):
        raise TypeError(f"expected encoder as a BinaryEncoder, got {type(encoder).__name__}")
    if not 0 < target_precision <= 1:
        raise ValueError(f"expected target_precision in (0, 1], got {target_precision}")
    if not same.any():
        raise ValueError("expected some pairs with same_answer true; without them no threshold "
                         "can be told apart from another")
    sims = _quality.pair_similarity(a, b, code_bits=encoder.code_bits, rescore=rescore,
                                    seed=encoder.seed)
    points = []
    for t in np.unique(np.concatenate([sims, [1.0]])):
        hit = sims >= t
        right = int((hit & same).sum())
        precision = right / int(hit.sum()) if hit.any() else 1.0
        points.append(CurvePoint(float(t), float(precision), right / int(same.sum())))
    meeting = [p for p in points if p.precision >= target_precision and p.recall > 0]
    chosen = meeting[0] if meeting else max(points, key=lambda p: (p.precision, p.recall))
    return CalibrationResult(*chosen, curve=points)
