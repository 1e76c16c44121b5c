"""engine.imageio: depth, layout, ICC and EXIF survive; truncated files are one clear line."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine import imageio
from engine.errors import BadInput, TooLarge


@pytest.fixture(scope="module")
def icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def exif() -> bytes:
    from PIL import Image

    e = Image.Exif()
    e[0x010F] = "EnhanceLayerTestCam"
    e[0x0132] = "2026:11:28 12:00:00"
    return e.tobytes()          # with the "Exif\0\0" prefix, as PIL writes it


def _layouts(photo):
    rgb = photo[:48, :64]
    return {
        "u8-rgb": rgb,
        "u8-gray": rgb[..., 1].copy(),
        "u8-rgba": np.dstack([rgb, np.linspace(0, 255, 64, dtype=np.uint8)[None].repeat(48, 0)]),
        "u16-rgb": rgb.astype(np.uint16) * 257 + 3,
        "u16-gray": rgb[..., 0].astype(np.uint16) * 250,
        "u16-rgba": np.dstack([rgb.astype(np.uint16) * 257, np.full((48, 64), 40000, np.uint16)]),
        "f32-rgb": rgb.astype(np.float32) / 255 * 1.5 - 0.1,
    }


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg", ".webp"])
def test_round_trip_keeps_depth_layout_and_profile(tmp_path, astronaut, icc, exif, ext):
    fmt = imageio.format_for("x" + ext)
    for name, px in _layouts(astronaut).items():
        lossy = fmt in ("jpeg", "webp")
        if lossy and not name.startswith("u8"):
            continue
        if fmt == "jpeg" and "rgba" in name or fmt == "webp" and "gray" in name:
            continue
        if fmt == "png" and name.startswith("f32"):
            continue
        p = tmp_path / f"{name}{ext}"
        imageio.write(p, imageio.Image(px, icc=icc, exif=exif))
        back = imageio.read(p)
        assert back.pixels.dtype == px.dtype and back.pixels.shape == px.shape, name
        if lossy:
            assert np.abs(back.pixels.astype(int) - px).mean() < 4, name
        else:
            assert np.array_equal(back.pixels, px), name
        assert back.icc == icc, name
        if fmt != "tiff":
            assert back.exif == exif[6:], name       # stored without the APP1 "Exif\0\0" prefix


def test_jpeg_exif_is_carried_byte_for_byte(tmp_path, coffee, exif):
    from PIL import Image

    src = tmp_path / "in.jpg"
    Image.fromarray(coffee[:80, :100]).save(src, exif=exif, quality=90)
    img = imageio.read(src)
    imageio.write(tmp_path / "out.jpg", img)
    imageio.write(tmp_path / "out.png", img)
    for out in ("out.jpg", "out.png"):
        with Image.open(tmp_path / out) as im:
            assert im.getexif()[0x010F] == "EnhanceLayerTestCam"
    with Image.open(src) as a, Image.open(tmp_path / "out.jpg") as b:
        assert a.info["exif"] == b.info["exif"]


def test_tiff_tags_and_16bit_kept(tmp_path, chelsea, icc):
    import tifffile

    px = chelsea[:40, :50].astype(np.uint16) * 257
    src = tmp_path / "scan.tif"
    tifffile.imwrite(src, px, photometric="rgb", resolution=(1200, 1200), resolutionunit=2,
                     extratags=[(34675, 7, len(icc), icc, True), (271, "s", 0, "ScannerCo", True)])
    img = imageio.read(src)
    imageio.write(tmp_path / "out.tif", img)
    with tifffile.TiffFile(tmp_path / "out.tif") as t:
        pg = t.pages[0]
        assert pg.dtype == np.uint16 and pg.tags[271].value == "ScannerCo"
        assert bytes(pg.tags[34675].value) == icc
        assert pg.tags[282].value[0] / pg.tags[282].value[1] == 1200


def test_truncated_and_unknown_files_are_one_line_errors(tmp_path, astronaut):
    for ext in (".png", ".jpg", ".tif", ".webp"):
        good = tmp_path / f"good{ext}"
        imageio.write(good, imageio.Image(astronaut[:200, :200]))
        data = good.read_bytes()
        bad = tmp_path / f"bad{ext}"
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(BadInput) as e:
            imageio.read(bad)
        assert "\n" not in str(e.value) and "bad" in str(e.value)
    (tmp_path / "x.bmp").write_bytes(b"BM....")
    with pytest.raises(BadInput, match="unknown image format"):
        imageio.read(tmp_path / "x.bmp")
    with pytest.raises(BadInput, match="unknown format"):
        imageio.format_for("x.png", "gif")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadInput, match="empty"):
        imageio.read(tmp_path / "empty.png")
    with pytest.raises(BadInput, match="no such file"):
        imageio.read(tmp_path / "missing.png")
    good = tmp_path / "good.png"
    with pytest.raises(TooLarge):
        imageio.read(good, max_mp=0.01)


def test_write_is_atomic(tmp_path, astronaut):
    """A failing encode leaves neither a partial file nor a temp file; an old output stays."""
    target = tmp_path / "out.jpg"
    imageio.write(target, imageio.Image(astronaut[:32, :32]))
    before = target.read_bytes()
    rgba = np.dstack([astronaut[:32, :32], astronaut[:32, :32, :1]])
    with pytest.raises(BadInput, match="transparency"):
        imageio.write(target, imageio.Image(rgba))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.jpg"]
    assert imageio.is_complete(target) and not imageio.is_complete(tmp_path / "nope.jpg")
    # mode of a normal file, not mkstemp's 0600
    assert (target.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


def test_probe_reads_the_header_only(tmp_path, coffee):
    p = tmp_path / "c.webp"
    imageio.write(p, imageio.Image(coffee))
    assert imageio.probe(p) == (600, 400)
    assert imageio.probe(Path(tmp_path / "c.webp")) == (600, 400)
