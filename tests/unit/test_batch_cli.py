"""``enhancelayer run`` as a user runs it (a real subprocess, real models, real photos)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from png_bytes import header_only_png

from engine import imageio

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    e = dict(os.environ, COLUMNS="120")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=e)


@pytest.fixture()
def folder(tmp_path, astronaut, coffee, chelsea):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    d = tmp_path / "in"
    imageio.write(d / "astronaut.jpg", imageio.Image(astronaut[150:250, 150:270], icc=icc))
    imageio.write(d / "coffee.png", imageio.Image(np.dstack([coffee[100:180, 250:350],
                                                               np.full((80, 100), 200, np.uint8)])))
    imageio.write(d / "cat16.tif", imageio.Image(chelsea[80:160, 150:250].astype(np.uint16) * 257, icc=icc))
    good = (d / "coffee.png").read_bytes()
    (d / "broken.png").write_bytes(good[: len(good) // 3])
    return d


def test_folder_of_mixed_formats_with_a_bad_file_then_resume(models_installed, folder, tmp_path):
    out = tmp_path / "out"
    r = run(folder, "-m", "photo-x2", "-o", out, "--strength", "70", "--grain")
    assert r.returncode == 2, r.stderr                  # one file failed -> non-zero at the end
    assert "broken.png" in r.stderr and "Traceback" not in r.stderr
    assert "images" in r.stderr and "3 written" in r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["astronaut.jpg", "cat16.tif", "coffee.png"]       # no partial/temp files
    a = imageio.read(out / "astronaut.jpg")
    c = imageio.read(out / "cat16.tif")
    p = imageio.read(out / "coffee.png")
    assert a.pixels.shape == (200, 240, 3) and a.icc
    assert c.pixels.dtype == np.uint16 and c.pixels.shape == (160, 200, 3) and c.icc
    assert p.pixels.shape == (160, 200, 4) and np.all(p.pixels[..., 3] == 200)
    # the 16-bit result is really 16-bit (not 8 bits shifted up)
    assert np.any(c.pixels % 257 != 0)

    mtimes = {q.name: q.stat().st_mtime_ns for q in out.iterdir()}
    r2 = run(folder, "-m", "photo-x2", "-o", out, "--resume")
    assert "3 of 4 outputs already complete" in r2.stderr
    assert {q.name: q.stat().st_mtime_ns for q in out.iterdir()} == mtimes
    assert r2.returncode == 2                            # the broken one still fails
    (folder / "broken.png").unlink()
    (out / "coffee.png").unlink()
    r3 = run(folder, "-m", "photo-x2", "-o", out, "--resume")
    assert r3.returncode == 0, r3.stderr
    assert "1 written, 2 skipped" in r3.stderr


def test_never_overwrites_the_original(models_installed, folder):
    src = folder / "coffee.png"
    before = src.read_bytes()
    r = run(src, "-m", "photo-x2", "-o", src)
    assert r.returncode == 2 and "overwrite the original" in r.stderr
    r = run(folder / "*.png", "-m", "photo-x2", "-o", folder)
    assert r.returncode == 2 and "overwrite the original" in r.stderr
    assert src.read_bytes() == before
    # another input is not overwritten either (astronaut.jpg -> --format jpeg ... coffee.png -> coffee.jpg)
    other = folder / "coffee.jpg"
    imageio.write(other, imageio.Image(np.zeros((20, 20, 3), np.uint8)))
    theirs = other.read_bytes()
    r = run(folder / "coffee.png", other, "-m", "photo-x2", "-o", folder, "--format", "jpeg")
    assert r.returncode == 2 and "overwrite the original" in r.stderr
    assert other.read_bytes() == theirs


def test_single_file_glob_format_and_bad_arguments(models_installed, folder, tmp_path):
    one = tmp_path / "one.png"
    rv = tmp_path / "review.png"
    r = run(folder / "astronaut.jpg", "-m", "jpeg-clean-1", "-o", one, "--strength", "100", "--keep-color",
            "--review", rv)
    assert r.returncode == 0, r.stderr
    assert imageio.read(one).pixels.shape == (100, 120, 3)
    assert imageio.read(rv).pixels.shape == (100, 120, 4)       # RGBA heat overlay on the result

    g = tmp_path / "g"
    r = run(str(folder / "*.jpg"), str(folder / "cat16.tif"), "-m", "photo-x2", "-o", g, "--format", "png",
            "--scale", "1.5", "--tile", "48")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in g.iterdir()) == ["astronaut.png", "cat16.png"]
    assert imageio.read(g / "cat16.png").pixels.dtype == np.uint16        # 16-bit PNG
    assert imageio.read(g / "astronaut.png").pixels.shape == (150, 180, 3)

    bad = tmp_path / "bad"
    for args, words in [(("--strength", "150"), "strength"), (("--format", "gif"), "unknown format"),
                        (("--memory-budget", "lots"), "memory budget"), (("-m", "nope"), "unknown model")]:
        argv = [folder / "astronaut.jpg", "-o", bad, *args]
        if "-m" not in args:
            argv += ["-m", "photo-x2"]
        r = run(*argv)
        assert r.returncode == 2 and words in r.stderr.lower() and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not bad.exists() or not any(bad.iterdir())


def test_mask_file_limits_the_effect(models_installed, folder, tmp_path):
    mask = np.zeros((100, 120), np.uint8)
    mask[:, 60:] = 255
    mp = tmp_path / "mask.png"
    imageio.write(mp, imageio.Image(mask))
    out = tmp_path / "m.png"
    r = run(folder / "astronaut.jpg", "-m", "photo-x2", "-o", out, "--mask", mp, "--feather", "4",
            "--strength", "100")
    assert r.returncode == 0, r.stderr
    from engine.pipeline.formats import from_float, resample

    src = imageio.read(folder / "astronaut.jpg").pixels
    res = imageio.read(out).pixels
    plain = from_float(resample(src, 200, 240), np.uint8)
    assert np.array_equal(res[:, :90], plain[:, :90])            # masked off: the original
    assert np.abs(res[:, 140:].astype(int) - plain[:, 140:]).mean() > 0.5
    r = run(folder / "coffee.png", "-m", "photo-x2", "-o", tmp_path / "w.png", "--mask", mp)
    assert r.returncode == 2 and "mask" in r.stderr


def test_time_estimate_and_gigantic_header(models_installed, coffee, tmp_path):
    """A long job is announced with its estimate; a 400 MP header is refused before decoding."""

    src = tmp_path / "coffee.png"
    imageio.write(src, imageio.Image(coffee))                      # 0.24 MP: ~77 s with photo-x4
    r = run(src, "-m", "photo-x4", "-o", tmp_path / "o.png", "--strength", "0")   # strength 0: no model run
    assert r.returncode == 0, r.stderr
    assert "estimated" in r.stderr and "photo-x4" in r.stderr

    huge = tmp_path / "huge.png"
    huge.write_bytes(header_only_png(20000, 20000))
    r = run(huge, "-m", "photo-x2", "-o", tmp_path / "h.png")
    assert r.returncode == 2 and "over the limit" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "h.png").exists()


def test_protect_review_and_defect_mask_outputs(models_installed, tmp_path, coffee):
    src = tmp_path / "coffee.png"
    imageio.write(src, imageio.Image(coffee[100:228, 200:360]))
    r = run(src, "-m", "photo-x2", "-o", tmp_path / "x2.png", "--protect", "faces,text",
            "--review", tmp_path / "review.png")
    assert r.returncode == 0, r.stderr
    rv = imageio.read(tmp_path / "review.png").pixels
    assert rv.shape == (256, 320, 4)                       # coloured overlay at output size
    r = run(src, "-m", "restore-dust", "-o", tmp_path / "fixed.png", "--defects", tmp_path / "defects.png")
    assert r.returncode == 0, r.stderr
    assert imageio.read(tmp_path / "defects.png").pixels.shape == (128, 160)


@pytest.mark.parametrize("args, needle", [
    (["--protect", "eyes"], "unknown protect value 'eyes'"),
    (["--sensitivity", "1.5"], "sensitivity must be 0-1 (got 1.5)"),
])
def test_bad_protect_and_sensitivity_are_one_line_errors(tmp_path, coffee, args, needle):
    src = tmp_path / "c.png"
    imageio.write(src, imageio.Image(coffee[:32, :32]))
    r = run(src, "-m", "restore-dust", "-o", tmp_path / "o.png", *args, "-q")
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_progress_bar_says_what_runs_and_counts_a_chain_in_percent() -> None:
    """The current image's bar: its label names the step ("denoise (3/3): tile 1/20"), and it
    shows a percentage, not "1000/1000" (a chain's units are thousandths of the whole); the
    images bar keeps "done/total"."""
    from rich.progress import Progress

    from engine.batch import progress_columns, step_label

    cols = progress_columns()
    with Progress(*cols, disable=True) as p:
        p.add_task("images", total=10, completed=3)
        p.add_task("x", total=1000, completed=500, percent=True)
        assert cols[2].render(p.tasks[0]).plain.strip() == "3/10"
        assert cols[2].render(p.tasks[1]).plain.strip() == "50 %"
    assert step_label("in.jpg", "denoise (3/3): tile 1/20") == "in.jpg: denoise (3/3): tile 1/20"
    assert step_label("in.jpg", "") == "in.jpg"
    long = step_label("a" * 60, "b")
    assert len(long) == 48 and long.endswith("…")
