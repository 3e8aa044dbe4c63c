"""Damaged caches are detected and reported in one line (the reliability issue, rows 1-3 and
acceptance 2): Fletcher-32 checksums on every dataset, ``inspect --verify`` reading every chunk,
a damaged sample read by ``evaluate`` / ``train-refiner`` / ``export-ab`` is a one-line error
naming the file and the sample; caches written before checksums stay readable."""

from __future__ import annotations

import json
import random

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from refinedepth.cache import (
    CacheConfig,
    CacheWriter,
    describe_cache,
    open_cache,
    verify_cache,
    write_cache,
)
from refinedepth.cli.main import cli
from refinedepth.errors import CacheError, DataError


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("REFINEDEPTH_DEBUG", raising=False)


def _cache(path, n=8, checksums=True, compression="lzf", seed=0):
    """A small synthetic cache like the issue's ``test.h5``: 60x80 gt (4,800 values a sample)."""
    rng = np.random.default_rng(seed)
    return write_cache(
        path,
        rough=rng.uniform(1, 9, (n, 1, 60, 80)).astype(np.float32),
        gt=rng.uniform(1, 9, (n, 60, 80)).astype(np.float32),
        sample_ids=[f"scene-{i:02d}" for i in range(n)],
        max_depth=10.0,
        checksums=checksums,
        compression=compression,
    )


def _chunks(path):
    """``[(start, stop, dataset, first_sample, last_sample)]``: the byte range of every stored
    chunk of every dataset, from HDF5's own chunk index."""
    out = []
    with h5py.File(path, "r") as f:
        for name, ds in f.items():
            if ds.chunks is None:
                continue
            per_chunk = ds.chunks[0]
            for k in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(k)
                first = info.chunk_offset[0]
                last = min(first + per_chunk, ds.shape[0]) - 1
                out.append((info.byte_offset, info.byte_offset + info.size, name, first, last))
    return out


def _flip(src, dst, offsets, masks=None):
    data = bytearray(src.read_bytes())
    for k, off in enumerate(offsets):
        data[off] ^= 0xFF if masks is None else masks[k]
    dst.write_bytes(bytes(data))
    return dst


def _run(args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output.strip().splitlines(), result


def _assert_one_line_error(args, *needles):
    code, lines, result = _run(args)
    assert code == 1, result.output
    assert not isinstance(result.exception, BaseException) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _commands(cache, tmp_path):
    return {
        "inspect": ["inspect", cache, "--verify", "-q"],
        "evaluate": ["evaluate", "--cache", cache, "--device", "cpu", "-q"],
        "export-ab": ["export-ab", cache, tmp_path / "ab", "-q"],
        "train-refiner": [
            "train-refiner", "--train", cache, "--out", tmp_path / "run", "--preset", "small",
            "--size", "64x64", "--max-steps", "4", "--device", "cpu", "-q",
        ],
    }


def test_row1_a_flipped_byte_is_reported(tmp_path):
    """Row 1: ``b[len(b)//2] ^= 0xFF`` used to pass ``inspect --verify`` and give abs_rel 1.4e32."""
    cache = _cache(tmp_path / "test.h5")
    middle = cache.stat().st_size // 2
    hit = [c for c in _chunks(cache) if c[0] <= middle < c[1]]
    assert hit and hit[0][2] in ("rough", "gt"), "the middle of the file should be sample data"
    _, _, name, index, _ = hit[0]
    c1 = _flip(cache, tmp_path / "c1.h5", [middle])
    sample = f"sample {index} ('scene-{index:02d}')"
    line = _assert_one_line_error(["inspect", c1, "--verify"], f"sample {index} (scene-{index:02d}) is damaged", name)
    assert "re-create it with 'refinedepth cache ... --overwrite'" in line
    _assert_one_line_error(["evaluate", "--cache", c1, "--device", "cpu", "-q"], str(c1), sample, "--overwrite")


def test_row2_a_corrupt_compressed_chunk_is_one_line_everywhere(tmp_path):
    """Row 2: 64 bytes flipped at the middle: each reader command exits 1 with one line."""
    cache = _cache(tmp_path / "test.h5")
    middle = cache.stat().st_size // 2
    bad = _flip(cache, tmp_path / "c2.h5", range(middle, middle + 64))
    commands = _commands(bad, tmp_path)
    commands["train-refiner --workers 1"] = [*commands["train-refiner"], "--workers", "1"]
    for name, args in commands.items():
        line = _assert_one_line_error(args, str(bad))
        assert "is damaged" in line and "Traceback" not in line, (name, line)


def test_row3_a_corrupt_attribute_is_one_line(tmp_path):
    """Row 3: 16 bytes flipped at 1% of the file (metadata: headers and attributes)."""
    cache = _cache(tmp_path / "test.h5")
    start = cache.stat().st_size // 100
    assert not any(a <= start < b for a, b, *_ in _chunks(cache)), "1% should be metadata"
    bad = _flip(cache, tmp_path / "c3.h5", range(start, start + 16))
    for args in (["inspect", bad], ["inspect", bad, "--verify"], ["evaluate", "--cache", bad, "-q"]):
        line = _assert_one_line_error(args, str(bad))
        assert "damaged" in line or "corrupt" in line, line


def test_every_byte_flipped_inside_chunk_data_is_detected(tmp_path):
    """Acceptance 2: one byte flipped at each of 50 random offsets inside chunk data (any
    dataset, including sample_id and done): all 50 reported by ``inspect --verify``, naming the
    sample (or the samples the chunk covers)."""
    cache = _cache(tmp_path / "test.h5", compression="gzip")
    chunks = _chunks(cache)
    assert {c[2] for c in chunks} == {"rough", "gt", "sample_id", "done"}
    rng = random.Random(13)
    detected = 0
    for trial in range(50):
        # every dataset gets picked, not only the big ones
        start, stop, name, first, last = rng.choice(chunks) if trial % 5 else rng.choice(
            [c for c in chunks if c[2] in ("sample_id", "done")])
        offset = rng.randrange(start, stop)
        bad = _flip(cache, tmp_path / "bad.h5", [offset], [rng.randrange(1, 256)])
        code, lines, result = _run(["inspect", bad, "--verify", "-q"])
        assert code == 1 and "Traceback" not in result.output, (name, offset, result.output)
        report = verify_cache(bad)
        assert set(range(first, last + 1)) <= set(report["bad_samples"]), (name, offset, report)
        assert f"sample {first}" in lines[-1] and name in lines[-1], lines[-1]
        detected += 1
    assert detected == 50


def test_new_caches_carry_checksums_on_every_dataset(tmp_path):
    cache = _cache(tmp_path / "c.h5")
    with h5py.File(cache, "r") as f:
        assert all(ds.fletcher32 for ds in f.values())
        assert f["rough"].compression == "lzf" and f["rough"].shuffle
        assert f.attrs["checksums"] == "fletcher32"
    assert describe_cache(cache)["checksums"] == "fletcher32"
    with open_cache(cache) as c:
        assert c.sample_ids()[3] == "scene-03" and c.read(3)["id"] == "scene-03"


def test_old_cache_without_checksums_stays_readable(tmp_path):
    """A cache laid out as before checksums (vlen ids, contiguous done, no Fletcher-32): read,
    verified (checksums reported absent), and a flipped exponent byte in gt is still caught by
    the value checks (the issue's gt ~ -1.2e38)."""
    old = _cache(tmp_path / "old.h5", checksums=False, compression="none")
    with h5py.File(old, "r") as f:
        assert not any(ds.fletcher32 for ds in f.values())
        assert f["sample_id"].dtype.kind == "O" and f["done"].chunks is None
        del_attr = "checksums" in f.attrs
    if del_attr:
        with h5py.File(old, "r+") as f:
            del f.attrs["checksums"]
    with open_cache(old) as c:
        assert c.complete and c.read(2)["id"] == "scene-02"
    report = verify_cache(old)
    assert report["ok"] and report["checksums"] == "absent"
    code, lines, _ = _run(["inspect", old])
    assert code == 0 and any("absent" in ln for ln in lines if ln.startswith("checksums"))
    # the top byte of one gt float (sign + exponent) flipped: raw data, nothing to checksum it
    (start, _, _, index, _) = next(c for c in _chunks(old) if c[2] == "gt" and c[3] == 5)
    top = start + 4 * 17 + 3  # gt[5].flat[17], little-endian: its sign and high exponent bits
    bad = _flip(old, tmp_path / "old-bad.h5", [top], [old.read_bytes()[top] ^ 0xFE])
    with open_cache(bad) as c:
        assert c.read(5)["gt"].min() < -1e30
    report = verify_cache(bad)
    assert not report["ok"] and report["bad_samples"] == [5] and report["negative_gt"] == 1
    _assert_one_line_error(["inspect", bad, "--verify"], "sample 5 (scene-05): gt has negative values")


def test_verify_counts_samples_not_lines(tmp_path):
    """18 samples not done is "18 of 20 sample(s)", not "6 problem(s)" (5 listed + a summary)."""
    cfg = CacheConfig(num_samples=20, rough_size=(8, 8), gt_size=(8, 8))
    with CacheWriter.create(tmp_path / "p.h5", cfg) as w:
        w.write_batch([0, 1], rough=np.ones((2, 1, 8, 8)), gt=np.ones((2, 8, 8)))
    report = verify_cache(tmp_path / "p.h5")
    assert report["not_done"] == 18 and report["bad_sample_count"] == 18 and report["problem_count"] == 18
    assert len(report["problems"]) == 6 and report["problems"][-1] == "... 18 samples in all: not done"
    line = _assert_one_line_error(["inspect", tmp_path / "p.h5", "--verify", "-q"])
    assert "failed verification: 18 of 20 sample(s) with problems (18 not done)" in line


def test_empty_ground_truth_is_refused_at_write_time(tmp_path):
    cfg = CacheConfig(num_samples=4, rough_size=(8, 8), gt_size=(8, 8))
    gt = np.ones((2, 8, 8), np.float32)
    with CacheWriter.create(tmp_path / "e.h5", cfg) as w:
        w.write_batch([0, 1], rough=np.ones((2, 1, 8, 8)), gt=gt, sample_ids=["a", "b"])
        gt[1] = np.where(np.arange(64).reshape(8, 8) % 2, 0.0, np.nan)  # zeros and NaNs only
        with pytest.raises(DataError) as info:
            w.write_batch([2, 3], rough=np.ones((2, 1, 8, 8)), gt=gt, sample_ids=["c", "d"])
        assert str(info.value) == (
            "sample 'd' (index 3) has no valid ground-truth pixel (all zero, negative or "
            "non-finite), so it cannot be scored or trained on; fix or remove it from the dataset "
            f"(or use --limit); the 2 sample(s) already in {tmp_path / 'e.h5'} are kept"
        )
        assert w.pending() == [2, 3]  # nothing of the refused batch was marked done
    with open_cache(tmp_path / "e.h5") as c:
        assert c.num_done == 2 and c.sample_ids()[:2] == ["a", "b"]


def test_mismatch_names_the_differing_key_in_full(tmp_path):
    options = {f"option_{k:02d}": "a fairly long value " * 3 for k in range(12)}
    cfg = CacheConfig(num_samples=2, rough_size=(8, 8), gt_size=(8, 8), dataset_options=options)
    CacheWriter.create(tmp_path / "m.h5", cfg).close()
    other = CacheConfig(
        num_samples=2, rough_size=(8, 8), gt_size=(8, 8), dataset_options={**options, "option_11": "b"}
    )
    with pytest.raises(CacheError) as info:
        CacheWriter.resume(tmp_path / "m.h5", other)
    assert f"(dataset_options.option_11: b vs {options['option_11']} — this command vs the file)" in str(info.value)


def test_damaged_done_bitmap_and_ids_are_named(tmp_path):
    cache = _cache(tmp_path / "t.h5", n=3)
    for name in ("done", "sample_id"):
        start, stop, *_ = next(c for c in _chunks(cache) if c[2] == name)
        bad = _flip(cache, tmp_path / f"{name}.h5", [start])
        with pytest.raises(CacheError, match=rf"the '{name}' (bitmap|dataset) is damaged"):
            with open_cache(bad) as c:
                c.done if name == "done" else c.sample_ids()  # noqa: B018
        report = verify_cache(bad)
        assert report["bad_samples"] == [0, 1, 2] and report["damaged"] == 3


def test_inspect_verify_fails_on_a_truncated_checkpoint_file(tmp_path):
    """A refiner checkpoint with a truncated file: ``inspect --verify`` exits 1 (it said ok:false
    and exited 0); an intact one passes and its sha256 are checked."""
    from refinedepth.refiner import checkpoint as ckpt
    from refinedepth.refiner.models import GeneratorConfig, build_generator

    g = build_generator(GeneratorConfig(encoder="C4-C8-C8", decoder="CD8-C4"), seed=0)
    meta = {"refiner": {"preset": "tiny", "generator": g.config.to_dict()}, "state": {"epoch": 1, "step": 1}}
    run = ckpt.save_checkpoint(tmp_path / "refiner", config=meta, generator=g)
    code, lines, result = _run(["inspect", run, "--verify", "--json"])
    assert code == 0, result.output
    assert json.loads(result.output)["verify"] == {"ok": True, "problems": []}
    files = json.loads((run / "config.json").read_text())["files"]
    name = next(iter(files))
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: len(data) // 2])
    _assert_one_line_error(["inspect", run, "--verify"], "failed verification: 1 damaged file(s)", "truncated")


def test_a_damaged_done_chunk_is_requeued_on_resume(tmp_path):
    """A done chunk failing its checksum (e.g. a write torn by a crash) does not lose the file:
    the writer marks its samples not done, and writing them again gives a verified cache."""
    rng = np.random.default_rng(3)
    rough = rng.uniform(1, 9, (3, 1, 8, 8)).astype(np.float32)
    gt = rng.uniform(1, 9, (3, 8, 8)).astype(np.float32)
    cache = write_cache(tmp_path / "t.h5", rough=rough, gt=gt)
    start, *_ = next(c for c in _chunks(cache) if c[2] == "done")
    bad = _flip(cache, tmp_path / "bad.h5", [start])
    assert not verify_cache(bad)["ok"]
    with open_cache(bad) as c:
        config = c.config
    with CacheWriter.resume(bad, config) as w:
        assert w.requeued == [0, 1, 2] and w.pending() == [0, 1, 2]
        w.write_batch([0, 1, 2], rough=rough, gt=gt, sample_ids=["000000", "000001", "000002"])
    assert verify_cache(bad)["ok"]
    with open_cache(bad) as c:
        np.testing.assert_array_equal(c.read(2)["rough"], rough[2])
