"""Frame selection for every reader: --dataset-arg offset / stop / every (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from refinedepth.data import open_dataset
from refinedepth.errors import ConfigError


def test_slice_of_the_split_in_order_then_limit():
    whole = open_dataset("synthetic", split="test", limit=20, size=(24, 32))
    ids = whole.ids
    picked = open_dataset("synthetic", split="test", size=(24, 32), offset=2, stop=17, every=5)
    assert picked.ids == ids[2:17:5] == [ids[2], ids[7], ids[12]]
    assert np.array_equal(picked[1].depth, whole[7].depth)
    limited = open_dataset("synthetic", split="test", size=(24, 32), every=3, limit=2)
    assert limited.ids == ids[0:6:3]
    with pytest.raises(ConfigError, match="limit must be a positive number of samples, got 0"):
        open_dataset("synthetic", split="test", size=(24, 32), every=3, limit=0)


@pytest.mark.parametrize(
    "options, message",
    [({"every": 0}, "every=0 .* at least 1"), ({"offset": -1}, "offset=-1 .* at least 0"),
     ({"every": "x"}, "every='x' .* integer"), ({"offset": 5, "stop": 5}, "stop=5 must be larger than offset=5")],
)
def test_bad_frame_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        open_dataset("synthetic", split="test", size=(24, 32), **options)


def test_cli_cache_with_every(tmp_path):
    from refinedepth.cache import open_cache
    from refinedepth.cli.main import cli

    out = tmp_path / "every.h5"
    args = ["cache", "--backbone", "fcrn", "--backbone-arg", "encoder=resnet18", "--backbone-arg",
            "input_size=[48,64]", "--dataset", "synthetic", "--dataset-arg", "size=[48,64]",
            "--dataset-arg", "every=4", "--dataset-arg", "stop=12", "--out", str(out), "-q", "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    expected = open_dataset("synthetic", split="train", size=(48, 64)).ids[0:12:4]
    with open_cache(out) as c:
        assert c.sample_ids() == expected
    typo = CliRunner().invoke(cli, [*args[:-5], "--dataset-arg", "evry=4", "--out", str(out), "-q"])
    assert typo.exit_code == 1 and "did you mean 'every'" in typo.output
