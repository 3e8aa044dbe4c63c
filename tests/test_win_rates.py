"""benchmarks/win_rates.py: the share of frames on which the last stage beats each stage and all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from win_rates import main, verdict, win_rates  # noqa: E402


def _rows():
    # per frame (abs_rel): rough, scale, refined
    table = {"a": (0.3, 0.2, 0.1), "b": (0.3, 0.2, 0.25), "c": (0.3, 0.2, 0.35), "d": (0.3, 0.2, "nan")}
    for fid, values in table.items():
        for stage, v in zip(("rough", "rough x scale", "+ r"), values):
            yield {"id": fid, "stage": stage, "abs_rel": str(v)}


def test_against_each_and_all():
    last, rates = win_rates(list(_rows()), ("abs_rel",))
    assert last == "+ r"
    # frames a, b, c count (d is NaN): better than rough on a and b, than the scale on a only
    assert rates["abs_rel"] == pytest.approx({"rough": 2 / 3, "rough x scale": 1 / 3, "all": 1 / 3})


def test_one_stage_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "one.csv"
    path.write_text("index,id,stage,abs_rel,rmse,silog,dbe_acc\n0,a,rough,0.1,0.2,3,4\n")
    monkeypatch.setattr(sys, "argv", ["win_rates.py", str(path)])
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err == f"{path}: the CSV holds one stage only: nothing to compare"


def test_verdict_names_the_metrics_short_of_the_target():
    rates = {"abs_rel": {"all": 0.95}, "rmse": {"all": 0.84}, "silog": {"all": 1.0}, "dbe_acc": {"all": float("nan")}}
    assert verdict(rates, 0.9) == (
        "FAIL: better than every other stage on fewer than 90% of the frames on rmse 84%, dbe_acc nan%"
    )
    assert verdict({"abs_rel": {"all": 0.9}, "rmse": {"all": 1.0}}, 0.9) == (
        "PASS: better than every other stage on at least 90% of the frames on each metric"
    )


def test_target_line_from_the_csv(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.csv"
    with path.open("w") as f:
        f.write("index,id,stage,abs_rel\n")
        for i, row in enumerate(_rows()):
            f.write(f"{i},{row['id']},{row['stage']},{row['abs_rel']}\n")
    monkeypatch.setattr(sys, "argv", ["win_rates.py", str(path), "--metric", "abs_rel", "--target", "0.3"])
    assert main() == 0
    out = capsys.readouterr().out
    assert "| abs_rel | 67% | 33% | 33% |" in out
    assert out.strip().endswith("PASS: better than every other stage on at least 30% of the frames on each metric")


def test_direction_and_infinite_values_follow_report_win_rate():
    # per frame: rough, refined; d1 (higher is better) and abs_rel
    table = {"a": ((0.5, 0.3), (0.6, 0.2)), "b": ((0.5, 0.3), (0.4, 0.4)), "c": ((0.5, 0.3), (0.5, "inf")),
             "d": ((0.5, 0.3), (0.7, 0.3))}
    rows = []
    for fid, stages in table.items():
        for stage, (d1, rel) in zip(("rough", "+ r"), stages):
            rows.append({"id": fid, "stage": stage, "d1": str(d1), "abs_rel": str(rel)})
    _, rates = win_rates(rows, ("d1", "abs_rel"))
    # d1: higher wins on a and d, b loses, c ties (counted, not a win) -> 2 of 4
    assert rates["d1"] == {"rough": 0.5, "all": 0.5}
    # abs_rel: c is infinite, left out; a wins, b loses, d ties -> 1 of 3
    assert rates["abs_rel"] == pytest.approx({"rough": 1 / 3, "all": 1 / 3})


def test_unknown_metric_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.csv"
    path.write_text("index,id,stage,abs_rel\n0,a,rough,0.2\n1,a,+ r,0.1\n")
    monkeypatch.setattr(sys, "argv", ["win_rates.py", str(path), "--metric", "speed"])
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown metric 'speed'" in err
