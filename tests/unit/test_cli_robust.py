"""``enhancelayer run`` on the inputs and disks that real users have: animations, full or
read-only disks, odd -o names, killed earlier runs, outputs cut since, gray+alpha files.

The CLI runs in-process (engine.cli.main with sys.argv) so a monkeypatched OSError reaches it;
one test runs the real console script to check the same line and exit code from outside."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from engine import imageio

REPO = Path(__file__).resolve().parents[2]


def cli(*args: object) -> tuple[int, str]:
    """Run ``enhancelayer run ARGS -q`` in this process: (exit code, stderr)."""
    from engine import cli as cli_mod

    buf = io.StringIO()
    argv = ["enhancelayer", "run", *map(str, args), "-q"]
    with mock.patch.object(sys, "argv", argv), contextlib.redirect_stderr(buf), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            cli_mod.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, buf.getvalue()


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "unexpected" not in err, err
    return lines[0]


def files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# ------------------------------------------------------------------ 1. multi-frame inputs
def test_animated_and_multi_page_inputs_are_refused_and_skipped(tmp_path, coffee, chelsea):
    import tifffile
    from PIL import Image as PILImage

    a, b = coffee[100:164, 200:280], chelsea[50:114, 100:180]
    d = tmp_path / "in"
    d.mkdir()
    frames = [PILImage.fromarray(a), PILImage.fromarray(b)]
    frames[0].save(d / "anim.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    frames[0].save(d / "anim.png", save_all=True, append_images=frames[1:], duration=100)
    tifffile.imwrite(d / "pages.tif", np.stack([a, b, a]), photometric="rgb")
    imageio.write(d / "still.png", imageio.Image(a))
    out = tmp_path / "out"
    code, err = cli(d, "-m", "denoise", "-o", out)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(ln.startswith("failed: ") for ln in lines), err
    assert "anim.webp" in err and "2 frames" in err and "3 pages" in err and "still image" in err
    assert "Traceback" not in err and "unexpected" not in err
    assert files(out) == ["still.png"]


def test_a_tiff_with_a_reduced_resolution_preview_is_still_one_picture(tmp_path, coffee):
    import tifffile

    p = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(p) as t:
        t.write(coffee[:64, :96], photometric="rgb")
        t.write(coffee[:32:2, :48:2], photometric="rgb", subfiletype=1)     # reduced-resolution page
    assert imageio.read(p).pixels.shape == (64, 96, 3)


# ------------------------------------------------------------------ 2. the disk says no
def _src(tmp_path: Path, photo: np.ndarray, ext: str = ".png") -> Path:
    p = tmp_path / "in" / f"photo{ext}"
    imageio.write(p, imageio.Image(photo))
    return p


def _raise(code: int):
    def f(*_a, **_k):
        raise OSError(code, os.strerror(code))
    return f


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp"])
def test_disk_full_at_fsync_is_one_line_and_leaves_no_temp(tmp_path, coffee, monkeypatch, ext):
    src = _src(tmp_path, coffee[:64, :80], ext)
    out = tmp_path / "out"
    monkeypatch.setattr(os, "fsync", _raise(errno.ENOSPC))
    code, err = cli(src, "-m", "denoise", "-o", out)
    line = one_line(err)
    assert code == 2
    assert f"cannot write {out / src.name}: no space left on device — free some space" in line, line
    assert files(out) == []                        # no temp, no partial


@pytest.mark.parametrize("code_, words", [(errno.EROFS, "read-only file system"),
                                          (errno.EACCES, "permission denied"),
                                          (errno.EPERM, "permission denied")])
def test_rename_refused_is_one_line_and_leaves_no_temp(tmp_path, coffee, monkeypatch, code_, words):
    src = _src(tmp_path, coffee[:64, :80])
    out = tmp_path / "out"
    monkeypatch.setattr(os, "replace", _raise(code_))
    code, err = cli(src, "-m", "denoise", "-o", out / "x.png")
    assert code == 2 and f"cannot write {out / 'x.png'}: {words} — " in one_line(err)
    assert files(out) == []


def test_output_folder_that_cannot_be_created(tmp_path, coffee, monkeypatch):
    src = _src(tmp_path, coffee[:64, :80])
    (tmp_path / "afile").write_bytes(b"x")
    code, err = cli(src, "-m", "denoise", "-o", tmp_path / "afile" / "sub")
    assert code == 2 and "cannot create the output folder" in one_line(err), err
    monkeypatch.setattr(os, "mkdir", _raise(errno.EACCES))
    code, err = cli(src, "-m", "denoise", "-o", tmp_path / "new" / "deeper")
    assert code == 2 and "cannot create the output folder" in one_line(err) and "permission denied" in err
    assert not (tmp_path / "new").exists()


@contextlib.contextmanager
def _tmpfs(where: Path, opts: str):
    """A real small tmpfs (we are root in CI); None when this machine does not allow mounts."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    try:
        yield where if r.returncode == 0 else None
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_real_full_and_read_only_disks(tmp_path, coffee, monkeypatch):
    """A real 64 KiB tmpfs filled up, and a real read-only one; where mounting is not allowed
    the same OSErrors are injected instead (so the test always checks something)."""
    src = _src(tmp_path, coffee[100:228, 200:360])                  # output ~37 KB
    with _tmpfs(tmp_path / "full", "size=64k") as full:
        if full is not None:
            (full / "filler").write_bytes(b"\0" * 48 * 1024)           # 16 KiB left
        else:
            monkeypatch.setattr(os, "fsync", _raise(errno.ENOSPC))
        out = tmp_path / "full" / "out"
        code, err = cli(src, "-m", "denoise", "-o", out)
        assert code == 2 and "no space left on device — free some space or choose another -o" in one_line(err)
        assert files(out) == []
        monkeypatch.undo()
    import tempfile

    with _tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        if ro is None:
            monkeypatch.setattr(os, "mkdir", _raise(errno.EROFS))
        code, err = cli(src, "-m", "denoise", "-o", tmp_path / "ro" / "out")       # folder to create
        assert code == 2 and "cannot create the output folder" in one_line(err) and "read-only" in err
        if ro is None:
            monkeypatch.setattr(tempfile, "mkstemp", _raise(errno.EROFS))
        code, err = cli(src, "-m", "denoise", "-o", tmp_path / "ro" / "x.png")     # file in the folder
        assert code == 2 and "cannot write" in one_line(err) and "read-only file system" in err
        assert files(tmp_path / "ro") == []


def test_console_script_reports_a_write_error_in_one_line(tmp_path, coffee):
    """From outside: a file where the folder should be; exit 2, one line, no traceback."""
    src = _src(tmp_path, coffee[:48, :64])
    (tmp_path / "blocker").write_bytes(b"x")
    r = subprocess.run([str(REPO / ".venv" / "bin" / "enhancelayer"), "run", str(src), "-m", "denoise",
                        "-o", str(tmp_path / "blocker" / "out"), "-q"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot create the output folder" in one_line(r.stderr)


# ------------------------------------------------------------------ 3. -o with a foreign extension
@pytest.mark.parametrize("name", ["out.bmp", "out.gif", "out.jxl", "out.heic", "out.exr", "x.JP2"])
def test_output_with_an_unsupported_extension_is_refused(tmp_path, coffee, name):
    src = _src(tmp_path, coffee[:48, :64])
    code, err = cli(src, "-m", "denoise", "-o", tmp_path / name)
    line = one_line(err)
    assert code == 2 and ".png, .jpg, .tif or .webp" in line and name in line
    assert not (tmp_path / name).exists()


def test_output_folder_names_still_work(tmp_path, coffee):
    src = _src(tmp_path, coffee[:48, :64])
    for name in ("results", "scans.2024"):
        code, err = cli(src, "-m", "denoise", "-o", tmp_path / name)
        assert code == 0, err
        assert files(tmp_path / name) == ["photo.png"]
    (tmp_path / "made.bmp").mkdir()                 # an existing folder is a folder, whatever its name
    code, err = cli(src, "-m", "denoise", "-o", tmp_path / "made.bmp")
    assert code == 0 and files(tmp_path / "made.bmp") == ["photo.png"], err


# ------------------------------------------------------------------ 4. stale temporaries
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_write_names_its_temp_with_the_writer_pid(tmp_path, coffee, monkeypatch):
    seen = []
    real = os.replace

    def spy(a, b):
        seen.append(Path(a).name)
        return real(a, b)

    monkeypatch.setattr(os, "replace", spy)
    imageio.write(tmp_path / "a.png", imageio.Image(coffee[:16, :16]))
    assert len(seen) == 1 and seen[0].startswith(f".a.png.{os.getpid()}.") and seen[0].endswith(".part")
    assert imageio._TEMP_RE.fullmatch(seen[0])


@pytest.mark.parametrize("resume", [False, True])
def test_stale_temps_of_this_batch_are_removed_others_kept(tmp_path, coffee, resume):
    src = _src(tmp_path, coffee[:48, :64])
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale = out / f".photo.png.{dead}.k3j_9x2a.part"
    keep = [out / ".photo.png.1.abcdefgh.part",               # pid 1 is alive: a live writer
            out / f".photo.png.{os.getpid()}.abcdefgh.part",  # this very process
            out / f".other.png.{dead}.abcdefgh.part",         # not an output of this batch
            out / ".photo.png.abcdefgh.part",                 # the old pattern / not ours
            out / "photo.png.part", out / "notes.txt"]
    for f in [stale, *keep]:
        f.write_bytes(b"half a file")
    code, err = cli(src, "-m", "denoise", "-o", out, *(["--resume"] if resume else []))
    assert code == 0, err
    assert not stale.exists()
    assert all(f.exists() for f in keep)
    assert (out / "photo.png").exists()


# ------------------------------------------------------------------ 5. --resume decodes fully
@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp"])
def test_is_complete_decodes_the_pixels_not_only_the_header(tmp_path, astronaut, ext):
    p = tmp_path / f"x{ext}"
    imageio.write(p, imageio.Image(astronaut[:160, :160]))
    assert imageio.is_complete(p)
    data = p.read_bytes()
    for cut in (len(data) * 2 // 3, len(data) - 3):
        p.write_bytes(data[:cut])
        if ext != ".webp":                       # (PIL reads a WebP's header from the whole file)
            imageio.probe(p)                     # the header still reads ...
        assert not imageio.is_complete(p), (ext, cut)   # ... but the file is cut


def test_resume_redoes_an_output_cut_since(tmp_path, coffee, chelsea):
    d = tmp_path / "in"
    imageio.write(d / "a.png", imageio.Image(coffee[:96, :128]))
    imageio.write(d / "b.tif", imageio.Image(chelsea[:96, :128].astype(np.uint16) * 257))
    imageio.write(d / "c.jpg", imageio.Image(coffee[100:196, 200:328]))
    out = tmp_path / "out"
    assert cli(d, "-m", "denoise", "-o", out)[0] == 0
    ref = {n: (out / n).read_bytes() for n in files(out)}
    (out / "a.png").write_bytes(ref["a.png"][: len(ref["a.png"]) // 2])
    (out / "b.tif").write_bytes(ref["b.tif"][: len(ref["b.tif"]) - 100])
    keep = (out / "c.jpg").stat().st_mtime_ns
    code, err = cli(d, "-m", "denoise", "-o", out, "--resume")
    assert code == 0, err
    assert {n: (out / n).read_bytes() for n in files(out)} == ref
    assert (out / "c.jpg").stat().st_mtime_ns == keep


# ------------------------------------------------------------------ 6. gray + alpha
def _ihdr(p: Path) -> tuple[int, int]:
    """(bit depth, colour type) of a PNG."""
    b = p.read_bytes()
    return b[24], b[25]


def _alpha_ramp(h: int, w: int, dtype) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.linspace(0, top, w, dtype=np.float64)[None].repeat(h, 0).astype(dtype)


@pytest.mark.parametrize("depth", [8, 16])
def test_gray_alpha_png_stays_gray_alpha(tmp_path, chelsea, depth):
    import cv2
    from PIL import Image as PILImage

    g8 = cv2.cvtColor(chelsea[60:124, 100:196], cv2.COLOR_RGB2GRAY)
    dtype = np.uint8 if depth == 8 else np.uint16
    gray = g8 if depth == 8 else g8.astype(np.uint16) * 257 + 11
    la = np.dstack([gray, _alpha_ramp(*gray.shape, dtype)])
    src = tmp_path / "in" / "la.png"
    src.parent.mkdir()
    imageio.write(src, imageio.Image(np.dstack([la[..., :1]] * 3 + [la[..., 1:]]),   # RGBA written ...
                                     extra={"layout": imageio.GRAY_ALPHA}))          # ... as gray+alpha
    assert _ihdr(src) == (depth, 4)
    if depth == 8:
        assert PILImage.open(src).mode == "LA" and np.array_equal(np.array(PILImage.open(src)), la)
    back = imageio.read(src)
    assert back.pixels.shape == (64, 96, 4) and back.extra["layout"] == imageio.GRAY_ALPHA
    assert np.array_equal(back.pixels[..., 0], gray) and np.array_equal(back.pixels[..., 3], la[..., 1])

    out = tmp_path / "out"
    code, err = cli(src, "-m", "denoise", "-o", out / "la.png")
    assert code == 0, err
    assert _ihdr(out / "la.png") == (depth, 4)
    res = imageio.read(out / "la.png").pixels
    assert res.dtype == dtype and np.array_equal(res[..., 3], la[..., 1])
    assert np.array_equal(res[..., 0], res[..., 1])
    code, err = cli(src, "-m", "denoise", "-o", out / "la.tif")
    assert code == 0, err
    import tifffile

    t = tifffile.imread(out / "la.tif")
    assert t.shape == (64, 96, 2) and t.dtype == dtype and np.array_equal(t[..., 1], la[..., 1])
    assert np.array_equal(t[..., 0], res[..., 0])        # same gray in both formats
    if depth == 8:
        code, err = cli(src, "-m", "denoise", "-o", out / "la.webp")
        assert code == 0 and imageio.read(out / "la.webp").pixels.shape == (64, 96, 4), err
    code, err = cli(src, "-m", "denoise", "-o", out / "la.jpg")
    assert code == 2 and "transparency" in one_line(err)


def test_two_sample_tiff_stays_two_samples_and_keeps_its_profile(tmp_path, coffee):
    import tifffile
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    g = coffee[100:164, 200:296, 1].astype(np.uint16) * 257
    ga = np.dstack([g, _alpha_ramp(64, 96, np.uint16)])
    src = tmp_path / "ga.tif"
    tifffile.imwrite(src, ga, photometric="minisblack", extrasamples=["unassalpha"],
                     extratags=[(34675, 7, len(icc), icc, True)])
    out = tmp_path / "o.tif"
    code, err = cli(src, "-m", "denoise", "-o", out)
    assert code == 0, err
    with tifffile.TiffFile(out) as t:
        pg = t.pages[0]
        assert pg.samplesperpixel == 2 and pg.dtype == np.uint16
        assert bytes(pg.tags[34675].value) == icc
        assert np.array_equal(pg.asarray()[..., 1], ga[..., 1])


def test_gray_of_a_tinted_result_is_its_luma():
    rgba = np.array([[[200, 100, 50, 7], [90, 90, 90, 255]]], np.uint8)
    img = imageio.Image(rgba, extra={"layout": imageio.GRAY_ALPHA})
    png = imageio.encode(img, "png")
    ihdr_w, ihdr_h = struct.unpack(">II", png[16:24])
    assert (ihdr_w, ihdr_h) == (2, 1)
    import cv2

    got = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    luma = round(0.2126 * 200 + 0.7152 * 100 + 0.0722 * 50)
    assert got.shape == (1, 2, 4) and list(got[0, 0]) == [luma, luma, luma, 7]
    assert list(got[0, 1]) == [90, 90, 90, 255]


# ------------------------------------------------------------------ --feather inf / nan (issue 17, item 4)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e400"])
def test_non_finite_option_values_are_one_line_and_nothing_written(tmp_path, coffee, value):
    """`--feather inf` crashed with OverflowError ("unexpected error") and `nan` was accepted;
    the option table now refuses them (checked also for the engine's JSON: 422)."""
    src = tmp_path / "a.png"
    imageio.write(src, imageio.Image(np.ascontiguousarray(coffee[:48, :64])), "png")
    code, err = cli(src, "-m", "denoise", "-o", tmp_path / "out.png", "--feather", value)
    assert code == 2 and "feather must be" in one_line(err)
    assert not (tmp_path / "out.png").exists()
    from engine.server import wire
    for name in ("feather", "strength"):
        bad = "NaN" if value == "nan" else "Infinity"
        raw = f'{{"model":"denoise","width":4,"height":4,"channels":3,"dtype":"u8","{name}":{bad}}}'
        with pytest.raises(wire.FrameError) as ei:
            wire.parse_header(raw.encode())
        assert ei.value.status == 422
