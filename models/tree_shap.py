"""Exact TreeSHAP for many rows: each tree is explained once per distinct way a row can pass through it.

LightGBM's ``pred_contrib`` (path-dependent TreeSHAP) costs about ``leaves x depth^2`` per tree and row, and
the score file explains a fifth of the book: at 5M customers, 997,700 rows took 326 s on 2 cores
(docs/benchmarks.md). Yet a tree's contributions for a row depend on the row only through the outcome of each of
the tree's splits: the algorithm reads a feature value nowhere else. Two rows that fall on the same side of every
threshold the tree tests get bitwise the same contributions from that tree, and a tree of 31 leaves tests about
20 features, so a batch of rows holds few distinct outcome patterns per tree (4.8% of 100,000 as-of rows on the
1M-customer book). Each tree is therefore explained on one representative row per pattern, and its contributions
are copied to the other rows of the pattern. The representatives are explained leaf by leaf
(``models.tree_paths``), not by LightGBM's recursion: the same values in a quarter to a third of the CPU time (the
default book's 10,871 explained rows, 94 trees: 2.0 s on one core against 8.2 s; 100,000 rows of the 1M book:
3.5-3.9 CPU-seconds against 8.7-9.8, docs/benchmarks.md).

SHAP values add over the trees of an ensemble, so the sum is TreeSHAP of the whole model: equal to
``pred_contrib`` up to the order of floating-point additions (differences near 1e-15, tested), and for a given
row the same whatever the batch around it (the tree's output for a pattern does not depend on which row
represents it, and the trees are added in their order).

The patterns are keyed finer than the splits, which is safe (more representatives, the same values): a numeric
feature by how many of the tree's thresholds lie below the value (``value <= threshold`` goes left), with
missing values and values LightGBM takes for zero (|x| <= 1e-35f, what ``missing_type: Zero`` sends the default
way) in bins of their own; a categorical feature by its value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models import tree_paths

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = ["design_matrix", "tree_shap"]
# LightGBM's kZeroThreshold, a C++ float (1e-35f, so 1.0000000180025095e-35 as a double): |x| at most this is zero,
# and missing with missing_type Zero
ZERO = float(np.float32(1e-35))


@dataclass(frozen=True)
class _Tree:
    """The features one tree splits on: numeric ones with their thresholds, and the categorical ones."""

    numeric: dict[int, np.ndarray]
    categorical: frozenset[int]

    @property
    def features(self) -> list[int]:
        return sorted({*self.numeric, *self.categorical})


def tree_shap(booster: lgb.Booster, X: pd.DataFrame | np.ndarray, num_iteration: int | None = None) -> np.ndarray:
    """``booster.predict(X, pred_contrib=True, num_iteration=num_iteration)`` of a single-output model: a
    ``(rows, features + 1)`` array in raw-score units, the last column the bias (the trees' expected values).

    ``X``: the model's design frame (categoricals with the training categories) or its float matrix."""
    values = design_matrix(booster, X)
    n, k = values.shape
    if booster.num_model_per_iteration() != 1:  # a multi-class model's contributions come per class: not deduplicated
        return np.asarray(booster.predict(values, pred_contrib=True, num_iteration=num_iteration))
    dump = booster.dump_model(num_iteration=num_iteration)["tree_info"]  # None: the best iteration if any, as
    trees = [_tree(info) for info in dump]  # ``predict``'s
    phi = np.zeros((n, k + 1), order="F")  # column-major: each feature's column is added to in one pass
    if n == 0:
        return phi
    binned = _Bins(values, trees)
    for t, tree in enumerate(trees):
        codes, first = _patterns(binned, t, tree, n)
        paths = tree_paths.parse(dump[t])
        features, part = tree_paths.contributions(paths, values[first])
        for i, j in enumerate(features):
            phi[:, j] += part[i].take(codes)
        phi[:, k] += paths.expected
    return phi  # column-major: framed as contributions without a copy


def design_matrix(booster: lgb.Booster, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The float matrix LightGBM reads: a categorical column as its code among the training categories (LightGBM's
    own ``pandas_categorical``), missing or unseen as NaN."""
    if not isinstance(X, pd.DataFrame):
        return np.ascontiguousarray(X, dtype=np.float64)
    cats = list(getattr(booster, "pandas_categorical", None) or [])
    out = np.empty((len(X), X.shape[1]), dtype=np.float64)
    i = 0
    for j, c in enumerate(X.columns):
        s = X[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            if i < len(cats) and list(s.cat.categories) != list(cats[i]):
                s = s.cat.set_categories(cats[i])
            codes = s.cat.codes.to_numpy()
            out[:, j] = np.where(codes < 0, np.nan, codes)
            i += 1
        else:
            out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "split_index" in node:
        yield node
        yield from _nodes(node["left_child"])
        yield from _nodes(node["right_child"])


def _tree(info: dict[str, Any]) -> _Tree:
    """A tree's split features, from its model dump."""
    numeric: dict[int, set[float]] = {}
    categorical: set[int] = set()
    for node in _nodes(info["tree_structure"]):
        f = int(node["split_feature"])
        if node["decision_type"] == "<=":
            numeric.setdefault(f, set()).add(float(node["threshold"]))
        else:
            categorical.add(f)
    return _Tree({f: np.array(sorted(v)) for f, v in numeric.items()}, frozenset(categorical))


class _Bins:
    """Each feature's bin among the thresholds of all trees, computed once; a tree's own bins are a lookup from
    these (its thresholds are a subset), which is cheaper than searching each tree's thresholds anew."""

    def __init__(self, values: np.ndarray, trees: list[_Tree]) -> None:
        self.global_thresholds: dict[int, np.ndarray] = {}
        self.bins: dict[int, np.ndarray] = {}
        self.categorical: dict[int, tuple[np.ndarray, int]] = {}
        numeric: dict[int, set[float]] = {}
        for tree in trees:
            for f, thr in tree.numeric.items():
                numeric.setdefault(f, set()).update(thr.tolist())
            for f in tree.categorical:
                if f not in self.categorical:
                    codes = pd.factorize(values[:, f], use_na_sentinel=False)[0].astype(np.int64)
                    self.categorical[f] = (codes, int(codes.max()) + 1 if len(codes) else 1)
        for f, thr_set in numeric.items():
            g = np.array(sorted(thr_set))
            x = values[:, f]
            b = np.searchsorted(g, x, side="left").astype(np.int32)
            b[np.isnan(x)] = len(g) + 1
            b[np.abs(x) <= ZERO] = len(g) + 2
            self.global_thresholds[f], self.bins[f] = g, b

    def local(self, f: int, thresholds: np.ndarray) -> tuple[np.ndarray, int]:
        """Feature ``f``'s bins among ``thresholds`` (one tree's), and how many there can be."""
        g = self.global_thresholds[f]
        lut = np.concatenate([np.searchsorted(thresholds, g, side="left"),
                              [len(thresholds), len(thresholds) + 1, len(thresholds) + 2]]).astype(np.int64)
        return lut.take(self.bins[f]), len(thresholds) + 3


def _patterns(binned: _Bins, t: int, tree: _Tree, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's pattern in tree ``t`` (codes 0..m-1) and the first row of each pattern (its representative)."""
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for f in tree.features:
        bins, size = binned.categorical[f] if f in tree.categorical else binned.local(f, tree.numeric[f])
        if radix * size >= 2**62:  # the mixed-radix key would overflow: renumber the patterns so far densely
            key = pd.factorize(key)[0].astype(np.int64)
            radix = int(key.max()) + 1
        key = key * size + bins
        radix *= size
    codes = pd.factorize(key)[0]
    first = np.empty(int(codes.max()) + 1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)  # written last to first: each pattern keeps its first row
    return codes, first
