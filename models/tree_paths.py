"""Exact path-dependent TreeSHAP of one LightGBM tree, computed leaf by leaf over patterns of split outcomes.

The contributions ``pred_contrib`` returns (Lundberg et al. 2018, path-dependent) are, for one tree, a sum over its
leaves. Take leaf ``l`` with value ``v`` and the distinct features ``U`` (``d`` of them) its path splits on; for each
``u`` in ``U`` let ``z_u`` be the product of the path's cover fractions at the splits on ``u`` (the share of the
training rows that went the path's way) and ``o_u`` be 1 when the row goes the path's way at every split on ``u``,
else 0. The leaf adds to feature ``i`` in ``U``

    v (o_i - z_i) * sum over S in U-{i} of |S|! (d-|S|-1)! / d!  *  prod_{u in S} o_u  *  prod_{u in U-{i}-S} z_u

and nothing to the other features. The ``o_u`` are 0 or 1, so the sum keeps only the sets ``S`` of ones, and comes to
``prod_{zeros but i} z  *  sum_s w_d(s) e_{a-s}(z of the ones but i)`` with ``e_m`` the elementary symmetric
polynomials and ``a`` the ones' count. A leaf's contributions depend on the row only through its ``d`` bits, so each
leaf's table is computed once per bit pattern that occurs (at most ``2^d``) and the rows look it up. LightGBM's
recursion costs about ``leaves x depth^2`` per tree and row in C++; this costs a few NumPy passes per leaf over the
rows and a small table (the idea of Fast TreeSHAP v2, Yang 2021, arXiv:2109.09847). The same sums in another order:
equal to ``pred_contrib`` to about 1e-15 (tests/unit/models/test_tree_paths.py).

A row's values depend only on the row (every operation over rows and patterns is elementwise), so a row gets bitwise
the same contributions whatever batch it is scored in. Pure: a tree's dump and a float matrix in, an array out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

__all__ = ["TreePaths", "contributions", "parse", "shap"]
# LightGBM's kZeroThreshold (1e-35f as a double): |x| at most this is zero, and missing with missing_type Zero
ZERO = float(np.float32(1e-35))
PATTERN_BLOCK = 4096  # patterns whose table is computed at once: bounds the (patterns, d, d) work array
DENSE_BITS = 16  # a leaf of at most this many features finds its patterns by a lookup over all 2^d, not a sort


@dataclass(frozen=True)
class Split:
    """One internal node's decision, as LightGBM's ``NumericalDecision`` / ``CategoricalDecision`` make it."""

    feature: int
    threshold: float            # numeric splits: ``value <= threshold`` goes left
    categories: np.ndarray | None  # categorical splits: these codes go left (missing and negative go right)
    default_left: bool
    missing: str                # "None" (missing read as 0), "Zero" (0 and missing the default way), "NaN"


@dataclass(frozen=True)
class Leaf:
    """A leaf and its path: per distinct feature on it, the splits' nodes and sides, and the cover product ``z``."""

    value: float
    features: np.ndarray                          # the distinct features, in the path's order
    zero: np.ndarray                              # z per feature
    sides: tuple[tuple[tuple[int, bool], ...], ...]  # per feature: (split, goes left) along the path


@dataclass(frozen=True)
class TreePaths:
    """A tree as its splits and its leaves."""

    splits: tuple[Split, ...]
    leaves: tuple[Leaf, ...]
    expected: float  # the tree's expected value (LightGBM's ``ExpectedValue``): the bias column


def parse(info: dict[str, Any]) -> TreePaths:
    """A tree of ``booster.dump_model()["tree_info"]``."""
    root = info["tree_structure"]
    if "split_index" not in root:  # a single leaf: no contribution but its value
        return TreePaths((), (), float(root["leaf_value"]))
    splits: list[Split] = []
    leaves: list[tuple[int, Leaf]] = []
    for index, leaf, path in _walk(root, splits, []):
        leaves.append((index, _leaf(leaf, path, splits)))
    total = float(root["internal_count"])
    counts = {index: float(leaf["leaf_count"]) for index, leaf in _leaf_nodes(root)}
    values = {index: leaf.value for index, leaf in leaves}
    expected = 0.0
    for index in sorted(counts):  # LightGBM's order and formula, for the same rounding
        expected += (counts[index] / total) * values[index]
    return TreePaths(tuple(splits), tuple(leaf for _, leaf in leaves), expected)


def _split(node: dict[str, Any]) -> Split:
    if node["decision_type"] == "<=":
        return Split(int(node["split_feature"]), float(node["threshold"]), None, bool(node["default_left"]),
                     str(node["missing_type"]))
    cats = np.array([int(c) for c in str(node["threshold"]).split("||")], dtype=np.int64)
    return Split(int(node["split_feature"]), math.nan, cats, bool(node["default_left"]), str(node["missing_type"]))


def _count(node: dict[str, Any]) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def _walk(node: dict[str, Any], splits: list[Split], path: list[tuple[int, bool, float]],
          ) -> Iterator[tuple[int, dict[str, Any], list[tuple[int, bool, float]]]]:
    """(leaf index, leaf, path) for every leaf; the path as (split, goes left, the child's cover fraction)."""
    if "split_index" not in node:
        yield int(node.get("leaf_index", 0)), node, path
        return
    s = len(splits)
    splits.append(_split(node))
    for side, left in (("left_child", True), ("right_child", False)):
        child = node[side]
        yield from _walk(child, splits, [*path, (s, left, _count(child) / _count(node))])


def _leaf_nodes(node: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    if "split_index" not in node:
        yield int(node.get("leaf_index", 0)), node
        return
    yield from _leaf_nodes(node["left_child"])
    yield from _leaf_nodes(node["right_child"])


def _leaf(node: dict[str, Any], path: list[tuple[int, bool, float]], splits: list[Split]) -> Leaf:
    order: list[int] = []
    zero: dict[int, float] = {}
    sides: dict[int, list[tuple[int, bool]]] = {}
    for s, left, fraction in path:
        f = splits[s].feature
        if f not in zero:
            order.append(f)
            zero[f], sides[f] = fraction, []
        else:  # LightGBM merges a feature met again: the fractions multiply (``UnwindPath``, then extend)
            zero[f] = fraction * zero[f]
        sides[f].append((s, left))
    return Leaf(float(node["leaf_value"]), np.array(order, dtype=np.int64), np.array([zero[f] for f in order]),
                tuple(tuple(sides[f]) for f in order))


def directions(splits: tuple[Split, ...], values: np.ndarray) -> np.ndarray:
    """``(splits, rows)``: whether each row goes left at each split (LightGBM's decision rules). LightGBM's
    predictor reads a row as its nonzero values, dropping any |x| <= 1e-35f: such a value is 0 at every split."""
    out = np.empty((len(splits), len(values)), dtype=bool)
    for s, split in enumerate(splits):
        x = values[:, split.feature]
        x = np.where(np.abs(x) <= ZERO, 0.0, x)
        nan = np.isnan(x)
        if split.categories is not None:
            code = np.where(nan, -1.0, x)
            out[s] = (code >= 0) & np.isin(np.trunc(code), split.categories)
            continue
        if split.missing != "NaN":
            x = np.where(nan, 0.0, x)
        left = x <= split.threshold
        if split.missing == "Zero":
            left = np.where((x >= -ZERO) & (x <= ZERO), split.default_left, left)
        elif split.missing == "NaN":
            left = np.where(nan, split.default_left, left)
        out[s] = left
    return out


@cache
def _weights(d: int) -> np.ndarray:
    """``w_d(s) = s! (d-1-s)! / d!`` for s = 0..d-1: the Shapley weight of a set of s of the other d-1 features."""
    return np.array([math.factorial(s) * math.factorial(d - 1 - s) / math.factorial(d) for s in range(d)])


def _table(ones: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """``(patterns, d)``: the contribution to each of a leaf's ``d`` features per unit of leaf value, for bit
    patterns ``ones`` (``(patterns, d)`` bool) with cover products ``zero`` (``(patterns, d)``).

    A feature with ``ones`` True and ``zero`` 1 changes nothing (a null player): leaves of fewer features are padded
    with such columns to be computed together."""
    p, d = ones.shape
    z1 = np.where(ones, zero, 0.0)
    e = np.zeros((p, d + 1))  # e[:, m]: e_m of the ones' z
    e[:, 0] = 1.0
    for u in range(d):
        e[:, 1:] = e[:, 1:] + z1[:, u, None] * e[:, :-1]
    # for a one i, e_m of the other ones (dividing its factor out, as LightGBM's UnwindPath does); for a zero i,
    # the ones' own
    loo = np.empty((p, d, d))
    loo[:, :, 0] = 1.0
    for m in range(1, d):
        loo[:, :, m] = e[:, m, None] - z1 * loo[:, :, m - 1]
    a = ones.sum(axis=1)[:, None] - ones  # how many ones besides i
    w = _weights(d)
    total = np.zeros((p, d))
    for m in range(d):  # sum_s w(s) e_{a-s}: e_m is 0 past a, so only s = a - m >= 0 count
        s = a - m
        total = total + np.where(s >= 0, loo[:, :, m] * w.take(np.clip(s, 0, d - 1)), 0.0)
    # the zeros' product, i's own factor left out
    z0 = np.where(ones, 1.0, zero)
    before = np.cumprod(np.c_[np.ones(p), z0[:, :-1]], axis=1)
    after = np.cumprod(np.c_[np.ones(p), z0[:, :0:-1]], axis=1)[:, ::-1]
    return (ones - zero) * before * after * total


def _patterns(goes: np.ndarray, leaf: Leaf) -> tuple[np.ndarray, np.ndarray]:
    """Each row's bit pattern for ``leaf`` (an index into the patterns that occur) and those patterns as bools.
    ``goes``: ``directions``' ``(splits, rows)``."""
    n = goes.shape[1]
    code = np.zeros(n, dtype=np.int64)
    for k, sides in enumerate(leaf.sides):
        s, left = sides[0]
        ok = goes[s] if left else ~goes[s]
        for s, left in sides[1:]:
            ok = ok & (goes[s] if left else ~goes[s])
        code |= ok.astype(np.int64) << k
    d = len(leaf.features)
    if d <= DENSE_BITS:
        present = np.flatnonzero(np.bincount(code, minlength=1 << d))
        lookup = np.empty(1 << d, dtype=np.int64)
        lookup[present] = np.arange(len(present))
        inverse = lookup.take(code)
    else:
        present, inverse = np.unique(code, return_inverse=True)
    bits = ((present[:, None] >> np.arange(d)) & 1).astype(bool)
    return inverse, bits


def contributions(tree: TreePaths, values: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The features the tree splits on (sorted) and their ``(features, rows)`` contributions for the rows of
    ``values`` (the model's float matrix); with ``tree.expected`` as the bias, ``pred_contrib`` of this tree alone."""
    features = sorted({int(f) for leaf in tree.leaves for f in leaf.features})
    out = np.zeros((len(features), len(values)))  # feature-major: a feature's row is added to in one pass
    if not tree.leaves or not len(values):
        return features, out
    slot = {f: i for i, f in enumerate(features)}
    goes = directions(tree.splits, values)
    found = [_patterns(goes, leaf) for leaf in tree.leaves]
    width = max(len(leaf.features) for leaf in tree.leaves)  # every leaf padded to this with null players
    ones = np.ones((sum(len(bits) for _, bits in found), width), dtype=bool)
    zero = np.ones(ones.shape)
    at = 0
    for leaf, (_, bits) in zip(tree.leaves, found, strict=True):
        ones[at:at + len(bits), :bits.shape[1]] = bits
        zero[at:at + len(bits), :bits.shape[1]] = leaf.zero
        at += len(bits)
    table = np.concatenate([_table(ones[i:i + PATTERN_BLOCK], zero[i:i + PATTERN_BLOCK])
                            for i in range(0, len(ones), PATTERN_BLOCK)]).T.copy()  # (width, patterns)
    at = 0
    for leaf, (inverse, bits) in zip(tree.leaves, found, strict=True):
        part = table[:, at:at + len(bits)] * leaf.value
        for k, f in enumerate(leaf.features):
            out[slot[int(f)]] += part[k].take(inverse)
        at += len(bits)
    return features, out


def shap(tree: TreePaths, values: np.ndarray, n_features: int) -> np.ndarray:
    """``(rows, n_features + 1)``: ``pred_contrib`` of this tree alone, the last column its expected value."""
    out = np.zeros((len(values), n_features + 1))
    out[:, n_features] = tree.expected
    features, phi = contributions(tree, values)
    out[:, features] = phi.T
    return out
