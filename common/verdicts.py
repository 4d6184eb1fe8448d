"""Verdicts on the report's differences from recorded runs: a test that fits the seeds each side has, one vocabulary.

Two sets of seeds: Welch's t. One run against a set of seeds: a t prediction interval (the single run is a new
draw from the other side's distribution). One run a side: no test, so the data cannot tell. A family of
verdicts is controlled with Holm's step-down correction. Where both sides kept test predictions on the same
images, McNemar's exact test of one network against the other adds what the test images alone can resolve
(it knows nothing of seed-to-seed noise).
"""

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

HOLDS, REVERSED, NOISE, NOT_REPRODUCED, NOT_RUN = "holds", "reversed", "within the noise", "not reproduced", "not run"
ALPHA = 0.05  # the family-wise error rate Holm's correction keeps


class Comparison(NamedTuple):
    """Side a minus side b: the difference of means, its 95 % interval, the two-sided p-value and the test."""
    difference: float
    low: float
    high: float
    p: float
    test: str
    n_a: int
    n_b: int


def compare(a, b, level: float = 0.95) -> Comparison:
    """mean(a) - mean(b), tested as the counts allow: Welch's t, a t prediction interval or nothing (one run a side)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, NOT_RUN, n_a, n_b)
    difference = a.mean() - b.mean()
    if n_a >= 2 and n_b >= 2:
        va, vb = a.var(ddof=1) / n_a, b.var(ddof=1) / n_b
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1)) if se > 0 else math.inf
        test = f"Welch's t, {n_a} vs {n_b} seeds (df {df:.1f})"
    elif max(n_a, n_b) >= 2:  # the single run against the others' spread: sd * sqrt(1 + 1/n)
        many = a if n_a > 1 else b
        se, df = many.std(ddof=1) * math.sqrt(1 + 1 / len(many)), len(many) - 1
        test = f"t prediction interval, 1 run vs {len(many)} seeds (df {df})"
    else:
        return Comparison(difference, math.nan, math.nan, math.nan, "no test: one run a side", n_a, n_b)
    if se == 0:  # identical runs on each side: any difference is exact
        return Comparison(difference, difference, difference, float(difference == 0), test, n_a, n_b)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = 2 * stats.t.sf(abs(difference) / se, df)
    return Comparison(difference, difference - half, difference + half, float(p), test, n_a, n_b)


def against_value(values, claimed: float, level: float = 0.95) -> Comparison:
    """mean(values) - claimed, with a one-sample t interval (no test for a single run)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return compare(values, [claimed])._replace(n_b=0)
    se, df = values.std(ddof=1) / math.sqrt(len(values)), len(values) - 1
    difference = values.mean() - claimed
    if se == 0:
        return Comparison(difference, difference, difference, float(difference == 0), "exact", len(values), 0)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = 2 * stats.t.sf(abs(difference) / se, df)
    return Comparison(difference, difference - half, difference + half, float(p),
                      f"one-sample t, {len(values)} seeds (df {df})", len(values), 0)


def value_verdict(comparison: Comparison) -> str:
    """A claimed value: holds where ours is within the noise of it, not reproduced where ours differs from it."""
    if comparison.test == NOT_RUN:
        return NOT_RUN
    if math.isnan(comparison.p):
        return NOISE
    return NOT_REPRODUCED if comparison.p < ALPHA else HOLDS


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the given order (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(comparison: Comparison, claimed: float, p_adjusted: float = None) -> str:
    """holds / reversed (significant, with / against the sign the report claims), not reproduced (about 0 where
    the report claims an effect our interval excludes), within the noise, or not run."""
    if comparison.test == NOT_RUN:
        return NOT_RUN
    p = comparison.p if p_adjusted is None else p_adjusted
    if not math.isnan(p) and p < ALPHA and not math.isnan(claimed) and claimed != 0:
        return HOLDS if (comparison.difference > 0) == (claimed > 0) else REVERSED
    # a claimed size our interval excludes; a claim of direction alone (claimed = +-inf) cannot be excluded so
    if not math.isnan(comparison.low) and math.isfinite(claimed) and not comparison.low <= claimed <= comparison.high:
        return NOT_REPRODUCED
    return NOISE


def mcnemar(right_a, right_b) -> tuple:
    """(images only a got right, images only b got right, exact two-sided p) for two networks on the same images."""
    right_a, right_b = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    if right_a.shape != right_b.shape:
        raise ValueError(f"McNemar's test pairs images: these predictions cover {len(right_a)} and {len(right_b)} "
                         "images; compare runs tested on the same test set.")
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


def judge(pairs: list) -> pd.DataFrame:
    """Verdicts for a family of comparisons, Holm-corrected together.

    `pairs`: dicts with label, a (values), b (values), claimed (the report's a - b, NaN where it has none) and,
    optionally, mcnemar (from mcnemar()) and paired (its networks). Holm counts only the comparisons with a p-value."""
    found = [compare(pair["a"], pair["b"]) for pair in pairs]
    adjusted = holm([comparison.p for comparison in found])
    lines = []
    for pair, comparison, p_holm in zip(pairs, found, adjusted):
        mc = pair.get("mcnemar")
        lines.append({"comparison": pair["label"], "report": _round(pair["claimed"]),
                      "ours": _round(comparison.difference),
                      "95% interval": _interval(comparison), "p": _round(comparison.p, 3),
                      "p (Holm)": _round(p_holm, 3), "seeds": f"{comparison.n_a} vs {comparison.n_b}",
                      "test": comparison.test, "verdict": verdict(comparison, pair["claimed"], p_holm),
                      "McNemar (one network a side)": "" if mc is None else
                      f"{pair.get('paired', '')}{mc[0]} vs {mc[1]} images, p {mc[2]:.3g}"})
    return pd.DataFrame(lines).set_index("comparison") if lines else pd.DataFrame(lines)


def format_p(p: float) -> str:
    """A p-value for a sentence: two significant digits, `< 0.001` below that, `n/a` without a test."""
    return "n/a" if p is None or math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.2g}"


def _round(value, digits: int = 4) -> float:
    return math.nan if value is None or math.isnan(value) else round(float(value), digits) + 0.0


def _interval(comparison: Comparison) -> str:
    return "" if math.isnan(comparison.low) else f"[{comparison.low:+.4f}, {comparison.high:+.4f}]"
