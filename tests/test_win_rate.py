"""refinedepth.report.win_rate (the paired win rate) and improvement(): one rule for the direction,
ties, NaN and infinite values, worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refinedepth.report import improvement, win_rate

nan, inf = math.nan, math.inf
# image:     0     1     2     3     4     5     6
REFINED = [0.1, 0.2, 0.3, nan, 0.5, inf, 0.4]
BASE = [0.2, 0.2, 0.1, 0.1, nan, 0.3, 0.5]
# images 3 (refined NaN), 4 (baseline NaN) and 5 (refined inf) are left out: 4 images count (0, 1, 2, 6);
# image 1 is a tie, counted and not a win.


def test_lower_is_better_with_nan_inf_and_a_tie():
    # abs_rel: 0.1 < 0.2 win, 0.2 = 0.2 tie, 0.3 > 0.1 loss, 0.4 < 0.5 win -> 2 of 4
    assert win_rate(REFINED, BASE, "abs_rel") == 0.5
    assert win_rate(np.array(REFINED), np.array(BASE), "dbe_acc") == 0.5  # arrays as well as lists


@pytest.mark.parametrize("metric", ["d1", "d3", "boundary_f1"])
def test_higher_is_better_metrics(metric):
    # 0.1 < 0.2 loss, tie, 0.3 > 0.1 win, 0.4 < 0.5 loss -> 1 of 4
    assert win_rate(REFINED, BASE, metric) == 0.25


def test_better_than_all_at_once():
    other = [0.3, 0.1, 0.05, 0.2, 0.2, 0.2, -inf]  # image 6 is left out now as well: 3 images count (0, 1, 2)
    # abs_rel: image 0 beats 0.2 and 0.3 (win); 1 ties the first (no); 2 loses to both -> 1 of 3
    assert win_rate(REFINED, [BASE, other], "abs_rel") == pytest.approx(1 / 3)
    # d1: image 0 loses; 1 ties the first (no); 2: 0.3 above 0.1 and 0.05 (win) -> 1 of 3
    assert win_rate(REFINED, [BASE, other], "d1") == pytest.approx(1 / 3)
    # one baseline in a list is the same as the baseline alone
    assert win_rate(REFINED, [BASE], "abs_rel") == win_rate(REFINED, BASE, "abs_rel") == 0.5


def test_nothing_left_is_nan():
    assert math.isnan(win_rate([], [], "abs_rel"))
    assert math.isnan(win_rate([nan, 0.1], [0.2, inf], "rmse"))
    assert math.isnan(win_rate([None], [0.2], "silog"))  # None counts as NaN
    assert math.isnan(win_rate([0.1], [[0.2], [nan]], "abs_rel"))


def test_unknown_metric_and_mismatched_lengths_are_errors():
    with pytest.raises(ValueError, match="unknown metric 'count'"):
        win_rate([0.1], [0.2], "count")
    with pytest.raises(ValueError, match="'abs_rel'.*3 images"):
        win_rate([0.1, 0.2, 0.3], [0.2, 0.3], "abs_rel")
    with pytest.raises(ValueError, match="abs_rel"):
        win_rate([0.1, 0.2], [[0.2, 0.3], [0.1]], "abs_rel")  # ragged


def test_improvement_uses_the_metric_direction():
    assert improvement({"boundary_f1": 0.5}, {"boundary_f1": 0.7}, keys=("boundary_f1",)) == {"boundary_f1": True}
    assert improvement({"boundary_f1": 0.7}, {"boundary_f1": 0.5}, keys=("boundary_f1",)) == {"boundary_f1": False}
    rough = {"abs_rel": 0.2, "rmse": 0.5, "d1": 0.6, "dbe_acc": 4.0}
    refined = {"abs_rel": 0.1, "rmse": 0.5, "d1": 0.8, "dbe_acc": 5.0}
    assert improvement(rough, refined) == {"abs_rel": True, "rmse": False, "d1": True}  # rmse: a tie
    assert improvement(refined, rough, keys=("d1", "dbe_acc")) == {"d1": False, "dbe_acc": True}
    with pytest.raises(ValueError, match="unknown metric 'loss'"):
        improvement({"loss": 1.0}, {"loss": 0.5}, keys=("loss",))
