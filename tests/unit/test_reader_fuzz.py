"""Fuzzing the image readers through the real batch path (``enhancelayer run`` in-process).

Seeds are small crops of real photos encoded as PNG (8/16-bit), JPEG, TIFF and WebP; hypothesis
(derandomized, fixed example counts) truncates them, flips bits and rewrites header bytes, and
hand-made odd files (animations, CMYK, palettes, 1-bit, gray+alpha, EXIF-rotated, a bomb
header) are run too. Property, for every file: either exit 0 with an output that decodes at
the input's size, or exit 2 with exactly one line; never exit 1, a traceback, an "unexpected
error", a partial or ``.part`` file in the output folder, and the process's peak memory grows
by less than MAX_RSS_GROWTH_MB over the whole run.

The number of malformed inputs tried is printed (and written to bench/results/fuzz_readers.md
when ENHANCELAYER_WRITE_RESULTS=1)."""
from __future__ import annotations

import collections
import contextlib
import io
import os
import resource
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from png_bytes import header_only_png

from engine import imageio

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 25                 # per (seed, mutation kind): 5 seeds x 3 kinds
MAX_RSS_GROWTH_MB = 400       # a 100 MP limit would allow more; every fuzzed file here is far below
COUNTS: collections.Counter = collections.Counter()
DISTINCT: set[bytes] = set()      # sha256 of every input (hypothesis may repeat one)
OUTCOMES: collections.Counter = collections.Counter()
_RSS0: list[int] = []


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def _fd2_captured():
    """stderr at the file-descriptor level too (C libraries write there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        box: list[str] = []
        try:
            yield box
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            box.append(f.read().decode("utf-8", "replace"))


def run_cli(src: Path, out: Path, *extra: str) -> tuple[int, str]:
    """``enhancelayer run SRC -m denoise -o OUT -q`` in this process: (exit code, all stderr)."""
    from engine import cli as cli_mod

    buf = io.StringIO()
    argv = ["enhancelayer", "run", str(src), "-m", "denoise", "-o", str(out), "-q", *extra]
    with _fd2_captured() as c_err, mock.patch.object(sys, "argv", argv), contextlib.redirect_stderr(buf), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            cli_mod.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, buf.getvalue() + c_err[0]


def check_property(data: bytes, ext: str, kind: str) -> None:
    """The property of the module docstring for one file's bytes."""
    if not _RSS0:
        _RSS0.append(int(_rss_mb()))
    import hashlib

    COUNTS[kind] += 1
    DISTINCT.add(hashlib.sha256(data).digest())
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / f"in{ext}"
        src.write_bytes(data)
        out = Path(d) / "out"
        code, err = run_cli(src, out)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        left = sorted(os.listdir(out)) if out.exists() else []
        assert not [n for n in left if n.endswith(".part") or n.startswith(".")], (kind, left)
        assert "Traceback" not in err and "unexpected" not in err, (kind, err)
        if code == 0:
            OUTCOMES["enhanced"] += 1
            assert lines == [] and left == [src.name], (kind, err, left)
            res = imageio.read(out / src.name)
            assert res.pixels.shape[:2] == imageio.read(src).pixels.shape[:2]
        else:
            OUTCOMES["refused"] += 1
            assert code == 2, (kind, code, err)
            assert len(lines) == 1, (kind, err)
            assert lines[0].startswith(("failed: ", "error: ")), (kind, err)
            assert left == [], (kind, left)
    assert _rss_mb() - _RSS0[0] < MAX_RSS_GROWTH_MB, (kind, _rss_mb(), _RSS0[0])


# ------------------------------------------------------------------ seeds from real photos
def _seeds() -> dict[str, tuple[str, bytes]]:
    from skimage import data

    coffee, cat = data.coffee(), data.chelsea()
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, ext, px in [("png8", ".png", coffee[100:148, 200:264]),
                              ("png16", ".png", cat[60:108, 120:184].astype(np.uint16) * 257),
                              ("jpeg", ".jpg", coffee[150:198, 300:364]),
                              ("tiff", ".tif", cat[100:148, 200:264]),
                              ("webp", ".webp", coffee[200:248, 100:164])]:
            p = Path(d) / f"{name}{ext}"
            imageio.write(p, imageio.Image(np.ascontiguousarray(px)))
            out[name] = (ext, p.read_bytes())
    return out


SEEDS = _seeds()


def _fix_png_crcs(b: bytearray) -> bytearray:
    """Recompute every chunk CRC so a header mutation reaches the decoder, not the CRC check."""
    i = 8
    while i + 12 <= len(b):
        n = struct.unpack(">I", b[i:i + 4])[0]
        if i + 12 + n > len(b):
            break
        b[i + 8 + n:i + 12 + n] = struct.pack(">I", zlib.crc32(bytes(b[i + 4:i + 8 + n])) & 0xFFFFFFFF)
        i += 12 + n
    return b


@st.composite
def mutated(draw, seed: str, kind: str):
    """(bytes, ext, label): a truncation, some bit flips, or header bytes rewritten."""
    ext, good = SEEDS[seed]
    b = bytearray(good)
    if kind == "truncate":
        b = b[:draw(st.integers(0, len(good) - 1))]
    elif kind == "bitflip":
        for pos in draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[pos] ^= 1 << draw(st.integers(0, 7))
    else:
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, min(len(b), 64) - 1))
            b[pos] = draw(st.integers(0, 255))
        if seed.startswith("png") and draw(st.booleans()):
            b = _fix_png_crcs(b)
    return bytes(b), ext, f"{seed}:{kind}"


@pytest.mark.parametrize("kind", ["truncate", "bitflip", "header"])
@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_mutated_real_photos(seed, kind):
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated(seed, kind))
    def prop(case):
        data, ext, kind = case
        check_property(data, ext, kind)

    prop()


# ------------------------------------------------------------------ hand-made odd files
def _pil_bytes(im, fmt: str, **kw) -> bytes:
    bio = io.BytesIO()
    im.save(bio, fmt, **kw)
    return bio.getvalue()


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:100 + h, 150:150 + w])


def _odd_files() -> dict[str, tuple[str, bytes, str]]:
    """name -> (extension, bytes, what is expected: 'ok' or 'refused')."""
    import tifffile
    from PIL import Image as PILImage

    a = _photo()
    pa, pb = PILImage.fromarray(a), PILImage.fromarray(a[::-1].copy())
    pal = pa.quantize(32)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    bits = PILImage.fromarray(a[..., 0] > 128)
    tif = {}
    for name, arr, kw in [("multipage.tif", np.stack([a, a]), {"photometric": "rgb"}),
                          ("1bit.tif", a[..., 0] > 128, {})]:
        bio = io.BytesIO()
        tifffile.imwrite(bio, arr, **kw)
        tif[name] = bio.getvalue()
    la = PILImage.fromarray(np.dstack([a[..., 1], a[..., 2]]), "LA")
    bomb = header_only_png(20000, 20000, idat=b"\0" * 1000)
    forged = header_only_png(9000, 9000, bit_depth=16, colour_type=6, idat=b"\0" * 1000)
    return {
        "apng": (".png", _pil_bytes(pa, "PNG", save_all=True, append_images=[pb], duration=50), "refused"),
        "animated-webp": (".webp", _pil_bytes(pa, "WEBP", save_all=True, append_images=[pb], duration=50),
                          "refused"),
        "multipage-tiff": (".tif", tif["multipage.tif"], "refused"),
        "cmyk-jpeg": (".jpg", _pil_bytes(pa.convert("CMYK"), "JPEG", quality=90), "ok"),
        "palette-png": (".png", _pil_bytes(pal, "PNG"), "ok"),
        "palette-png-transparent": (".png", _pil_bytes(pal_t, "PNG", transparency=0), "ok"),
        "1bit-png": (".png", _pil_bytes(bits, "PNG"), "ok"),
        "1bit-tiff": (".tif", tif["1bit.tif"], "ok"),
        "la-png": (".png", _pil_bytes(la, "PNG"), "ok"),
        "bomb-header-png": (".png", bomb, "refused"),
        "forged-header-png": (".png", forged, "refused"),
    }


ODD = _odd_files()


@pytest.mark.parametrize("name", sorted(ODD))
def test_hand_made_odd_files(name):
    ext, data, expected = ODD[name]
    before = OUTCOMES["refused"]
    check_property(data, ext, f"odd:{name}")
    assert (OUTCOMES["refused"] > before) == (expected == "refused"), name


def test_exif_rotated_jpeg_keeps_stored_pixels_and_the_orientation_tag(tmp_path):
    """Decided: the pipeline works on the pixels as stored and carries the EXIF (orientation
    included) to the output, so any viewer shows the result turned exactly as the original.
    Rotating the pixels AND keeping the tag would turn it twice; dropping the tag would lose it."""
    from PIL import Image as PILImage

    a = _photo(48, 80)
    ex = PILImage.Exif()
    ex[0x0112] = 6                                    # rotate 90 CW to display
    src = tmp_path / "rot.jpg"
    src.write_bytes(_pil_bytes(PILImage.fromarray(a), "JPEG", quality=92, exif=ex.tobytes()))
    COUNTS["odd:exif-rotated-jpeg"] += 1
    DISTINCT.add(__import__("hashlib").sha256(src.read_bytes()).digest())
    for out in (tmp_path / "o.jpg", tmp_path / "o.png", tmp_path / "o.webp"):
        code, err = run_cli(src, out)
        assert code == 0, err
        with PILImage.open(out) as im:
            assert im.size == (80, 48)                # stored, not rotated
            assert im.getexif().get(0x0112) == 6, out.suffix
            shown = np.array(PILImage.fromarray(np.array(im.convert("RGB"))).transpose(PILImage.Transpose.ROTATE_270))
        assert shown.shape == (80, 48, 3)
    OUTCOMES["enhanced"] += 1


def test_report_counts():
    """Runs last in this module: prints the counts (and writes them when asked)."""
    total = sum(COUNTS.values())
    assert total > 0
    mutated_n = sum(v for k, v in COUNTS.items() if not k.startswith("odd:"))
    odd_n = total - mutated_n
    growth = _rss_mb() - (_RSS0[0] if _RSS0 else _rss_mb())
    by_kind: collections.Counter = collections.Counter()
    for k, v in COUNTS.items():
        if not k.startswith("odd:"):
            by_kind[k.split(":")[1]] += v
    print(f"\nreader fuzz: {total} inputs, {len(DISTINCT)} distinct ({mutated_n} mutated real photos: "
          f"{dict(sorted(by_kind.items()))}; {odd_n} hand-made odd files); "
          f"{OUTCOMES['enhanced']} enhanced, {OUTCOMES['refused']} refused in one line; "
          f"peak RSS growth {growth:.0f} MB (bound {MAX_RSS_GROWTH_MB} MB)")
    if os.environ.get("ENHANCELAYER_WRITE_RESULTS") == "1":
        _write_results(total, mutated_n, odd_n, by_kind, growth)


def _write_results(total: int, mutated_n: int, odd_n: int, by_kind: collections.Counter, growth: float) -> None:
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(COUNTS.items()))
    text = f"""# Reader fuzzing (tests/unit/test_reader_fuzz.py)

Written by `ENHANCELAYER_WRITE_RESULTS=1 .venv/bin/python -m pytest tests/unit/test_reader_fuzz.py -s`.

Every input went through the real batch path (`enhancelayer run FILE -m denoise -o OUT`, in-process).
Property: exit 0 with an output that decodes at the input's size, or exit 2 with exactly one line;
never exit 1, a traceback or an "unexpected error"; never a partial or `.part` file left in the
output folder; peak RSS growth under {MAX_RSS_GROWTH_MB} MB. A 20000x20000 header is refused
before decoding, and so is a header whose pixels cannot come from the file's compressed data.

- inputs tried: **{total}** ({len(DISTINCT)} distinct; {mutated_n} mutated real photos, {odd_n} hand-made
  odd files, one of them the EXIF-rotated JPEG run to JPEG, PNG and WebP)
- mutations: {', '.join(f'{k} {v}' for k, v in sorted(by_kind.items()))} (hypothesis, derandomized,
  {EXAMPLES} examples per seed and kind; seeds: PNG 8-bit, PNG 16-bit, JPEG, TIFF, WebP crops of
  scikit-image's coffee and chelsea)
- outcomes: {OUTCOMES['enhanced']} enhanced, {OUTCOMES['refused']} refused in one line, 0 otherwise
- peak RSS growth over the run: {growth:.0f} MB

| input kind | count |
|---|---|
{rows}
"""
    path = REPO / "bench" / "results" / "fuzz_readers.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
