"""The verdict module against cases whose answers are known: R's Welch example on Student's sleep data, the
t table, Holm and McNemar worked by hand, and the vocabulary's rules."""

import math

import pytest

pytest.importorskip("scipy", reason="the verdicts need scipy (in requirements.txt)")

from common.verdicts import (  # noqa: E402
    HOLDS,
    NOISE,
    NOT_REPRODUCED,
    NOT_RUN,
    REVERSED,
    against_value,
    compare,
    holm,
    judge,
    mcnemar,
    value_verdict,
    verdict,
)

# Cushny & Peebles' extra hours of sleep under two drugs (Student, 1908; R's `sleep` data set)
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_matches_r_on_the_sleep_data():
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939,
    # 95 percent confidence interval -3.3654832 0.2054832
    result = compare(DRUG1, DRUG2)
    assert result.difference == pytest.approx(-1.58)
    assert result.p == pytest.approx(0.07939, abs=5e-5)
    assert (result.low, result.high) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)
    assert "Welch" in result.test and "df 17.8" in result.test


def test_a_single_run_against_three_seeds_uses_the_t_table():
    seeds = [0.80, 0.81, 0.82]  # mean 0.81, sd 0.01
    # t(0.975, 2 df) = 4.303 in every table: a run that far out, in units of sd * sqrt(1 + 1/3), has p = 0.05
    edge = 0.81 + 4.303 * 0.01 * math.sqrt(1 + 1 / 3)
    result = compare([edge], seeds)
    assert result.p == pytest.approx(0.05, abs=1e-4) and result.low == pytest.approx(0, abs=1e-4)
    assert compare(seeds, [edge]).difference == pytest.approx(-result.difference)  # either side may be the run
    assert "prediction interval" in result.test
    one_each = compare([0.8], [0.9])
    assert math.isnan(one_each.p) and one_each.difference == pytest.approx(-0.1)
    assert verdict(one_each, claimed=-0.1) == NOISE  # one run a side cannot tell


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then never decreasing
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.2, math.nan, 0.01])  # a comparison without a test is not counted
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_mcnemar_exact_by_hand():
    right_a = [True] * 10 + [False] * 6
    right_b = [True] * 16
    assert mcnemar(right_a, right_b) == (0, 6, pytest.approx(2 * 0.5 ** 6))
    right_a[10] = True  # one image only a gets right: 2 * (1 + 6) / 64
    right_b[0] = False
    assert mcnemar(right_a, right_b) == (1, 5, pytest.approx(2 * 7 / 64))
    with pytest.raises(ValueError, match="same test set"):
        mcnemar([True], [True, False])


def test_the_vocabulary():
    clear = compare([0.84, 0.85, 0.86], [0.80, 0.81, 0.82])  # +0.04, far beyond the seeds' spread
    assert verdict(clear, claimed=0.02) == HOLDS
    assert verdict(clear, claimed=-0.02) == REVERSED
    assert verdict(clear, claimed=0.02, p_adjusted=0.2) == NOISE  # Holm may withdraw it
    flat = compare([0.80, 0.82, 0.81], [0.81, 0.80, 0.82])  # no difference at all
    assert verdict(flat, claimed=0.005) == NOISE  # the report's small effect is inside our interval
    assert verdict(flat, claimed=-0.045) == NOT_REPRODUCED  # its large one is excluded
    assert verdict(compare([], [0.8]), claimed=0.01) == NOT_RUN


def test_a_claimed_value():
    assert value_verdict(against_value([0.1, 0.1, 0.1], 0.1)) == HOLDS  # stuck at chance, as claimed
    assert value_verdict(against_value([0.70, 0.72, 0.71], 0.1)) == NOT_REPRODUCED
    assert value_verdict(against_value([0.8], 0.84)) == NOISE  # one run: no spread to test with
    assert value_verdict(against_value([], 0.84)) == NOT_RUN
    # R: t.test(sleep$extra[1:10], mu = 0): t = 1.3257, df = 9, p-value = 0.2176
    assert against_value(DRUG1, 0).p == pytest.approx(0.2176, abs=5e-5)


def test_judge_corrects_the_family_together():
    pairs = [{"label": "x", "a": [0.84, 0.85, 0.86], "b": [0.80, 0.81, 0.82], "claimed": 0.03},
             {"label": "y", "a": [0.81, 0.83, 0.80], "b": [0.80, 0.81, 0.82], "claimed": 0.01,
              "mcnemar": (3, 9, 0.146)}]
    table = judge(pairs)
    assert table.loc["x", "p (Holm)"] == pytest.approx(min(1, 2 * table.loc["x", "p"]), abs=1e-3)
    assert table.loc["x", "verdict"] == HOLDS and table.loc["y", "verdict"] == NOISE
    assert table.loc["y", "McNemar (one network a side)"].startswith("3 vs 9 images")


def test_p_values_read_in_a_sentence():
    from common.verdicts import format_p
    assert (format_p(0.0162), format_p(0.00004), format_p(math.nan)) == ("0.016", "< 0.001", "n/a")
