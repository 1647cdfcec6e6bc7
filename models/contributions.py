"""Per-row feature contributions for any of our LightGBM models, linear trees included.

Plain trees: TreeSHAP with LightGBM's ``pred_contrib`` values, run once per tree and pattern of split outcomes
and leaf by leaf (models/tree_shap.py, models/tree_paths.py: the same values, an order of magnitude faster on a
batch). Linear trees (``linear_tree``:
a ridge model in each leaf) are not supported by LightGBM's TreeSHAP ("not implemented for linear trees"), yet
the reasons in the score file need an exact decomposition. A linear tree's output for a row in leaf ``l`` is
``const_l + sum_j c_lj * x_j``, or the leaf's plain value ``v_l`` when one of the leaf's features is missing.
Around a centre ``m`` (the training mean of each feature) that is

    a_l                                   the leaf's output at the centre: const_l + sum_j c_lj * m_j
    + sum_j c_lj * (x_j - m_j)            each linear feature's own term, when none is missing
    + (v_l - a_l) shared by the missing   the fallback's difference, given to the features that caused it

The first part is a tree with constant leaves ``a_l``, which TreeSHAP explains exactly (path-dependent, over
the leaves' training counts); the other two are additive by construction. The contributions plus the bias
therefore sum to the raw score exactly, as TreeSHAP's do (tested). What it does not do is share a leaf's
linear term with the split features that chose the leaf: a feature's linear effect is reported on itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.tree_shap import design_matrix, tree_shap

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = ["contributions", "is_linear", "linear_centre"]


def is_linear(booster: lgb.Booster) -> bool:
    """Whether the model was trained with ``linear_tree`` (a loaded model carries its training parameters)."""
    return bool(booster.params.get("linear_tree", False))


def linear_centre(X: pd.DataFrame) -> dict[str, float]:
    """The centre a linear tree's terms are measured from: each numeric feature's mean (0 when all missing).
    Stored with the model (meta.json) so the score file's reasons do not depend on the batch being scored."""
    num = X.select_dtypes(exclude="category")
    means = num.astype(float).mean(skipna=True)
    return {c: float(v) if np.isfinite(v) else 0.0 for c, v in means.items()}


def contributions(booster: lgb.Booster, X: pd.DataFrame, centre: Mapping[str, float] | None = None) -> np.ndarray:
    """``(rows, features + 1)`` contributions in raw-score units, the last column the bias, as ``pred_contrib``.

    ``centre``: a linear-tree model's feature centres (``linear_centre`` of its training rows); None takes the
    means of ``X`` itself. Ignored for plain trees."""
    from models.lgbm import lgb  # here, not with the module: loading the parameters must not load LightGBM

    it = booster.best_iteration or None
    if not is_linear(booster):
        return tree_shap(booster, X, it)
    names = booster.feature_name()
    m = linear_centre(X) if centre is None else dict(centre)
    mvec = np.array([float(m.get(c, 0.0)) for c in names])
    values = design_matrix(booster, X[names])  # categoricals as codes: they never enter a leaf's linear model
    leaves = np.asarray(booster.predict(X, pred_leaf=True, num_iteration=it), dtype=np.int64).reshape(len(X), -1)
    dump = booster.dump_model(num_iteration=it if it else -1)
    phi = np.zeros((len(X), len(names) + 1))
    at_centre: list[list[float]] = []
    for t, info in enumerate(dump["tree_info"][: leaves.shape[1]]):
        tree_leaves = sorted(_leaves(info["tree_structure"]), key=lambda lf: lf.get("leaf_index", 0))
        at_centre.append([_at(lf, mvec) for lf in tree_leaves])
        _add_linear_terms(phi, leaves[:, t], tree_leaves, at_centre[-1], values, mvec)
    constant = lgb.Booster(model_str=_constant_model(booster.model_to_string(), at_centre))
    phi += tree_shap(constant, values, it)  # the same matrix: the constant model has the same features
    return phi


def _leaves(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "leaf_index" in node or "split_index" not in node:
        yield node
        return
    yield from _leaves(node["left_child"])
    yield from _leaves(node["right_child"])


def _at(leaf: dict[str, Any], centre: np.ndarray) -> float:
    """A leaf's output at the centre (its plain value when it has no linear model)."""
    feats = leaf.get("leaf_features") or []
    if not feats:
        return float(leaf.get("leaf_const", leaf["leaf_value"]))
    return float(leaf["leaf_const"] + np.dot(leaf["leaf_coeff"], centre[feats]))


def _add_linear_terms(phi: np.ndarray, leaf_of_row: np.ndarray, tree_leaves: list[dict[str, Any]],
                      at_centre: list[float], values: np.ndarray, centre: np.ndarray) -> None:
    """Add each row's linear terms (or its missing-value fallback) for one tree to ``phi`` in place."""
    order = np.argsort(leaf_of_row, kind="stable")
    bounds = np.searchsorted(leaf_of_row[order], np.arange(len(tree_leaves) + 1))
    for k, leaf in enumerate(tree_leaves):
        feats = np.asarray(leaf.get("leaf_features") or [], dtype=np.int64)
        rows = order[bounds[k]:bounds[k + 1]]
        if not len(feats) or not len(rows):
            continue
        x = values[np.ix_(rows, feats)]
        missing = np.isnan(x)
        fallback = missing.any(axis=1)
        terms = np.where(missing, 0.0, np.asarray(leaf["leaf_coeff"]) * (x - centre[feats]))
        terms[fallback] = 0.0
        share = (float(leaf["leaf_value"]) - at_centre[k]) / np.maximum(missing.sum(axis=1, keepdims=True), 1)
        terms += np.where(missing & fallback[:, None], share, 0.0)
        phi[np.ix_(rows, feats)] += terms


def _constant_model(text: str, at_centre: list[list[float]]) -> str:
    """The model file with every tree's leaves set to their output at the centre and its linear models off."""
    head, *trees = text.split("\nTree=")
    # tree_sizes gives each tree's length in bytes for parallel loading; the new leaf values change them
    out = ["\n".join(line for line in head.split("\n") if not line.startswith("tree_sizes="))]
    for block in trees:
        t = int(block.split("\n", 1)[0])
        lines = block.split("\n")
        for i, line in enumerate(lines):
            if line.startswith("leaf_value=") and t < len(at_centre):
                lines[i] = "leaf_value=" + " ".join(repr(v) for v in at_centre[t])
            elif line == "is_linear=1":
                lines[i] = "is_linear=0"
        out.append("\n".join(lines))
    return "\nTree=".join(out).replace("[linear_tree: 1]", "[linear_tree: 0]")
