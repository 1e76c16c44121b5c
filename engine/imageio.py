"""Read and write image files without losing what a retoucher cares about.

- Bit depth is kept: uint8, uint16 (PNG, TIFF) and float32 (TIFF) come back as they were.
- Layout is kept: gray, gray+alpha (read as RGBA), RGB, RGBA.
- The colour profile (ICC) and EXIF are carried as opaque bytes, untouched; PNG's other
  colour/physical chunks (sRGB, gAMA, cHRM, pHYs) and TIFF's descriptive tags (make,
  model, date, artist, copyright, description, resolution) are carried too. TIFF's EXIF
  sub-IFD is not rewritten (tifffile cannot write one back untouched); its make/model/date
  tags are.
- Writes are atomic: a temporary name in the target folder, fsync, then ``os.replace``,
  so a crash never leaves a truncated file that looks complete (``--resume`` relies on it).
- An unreadable or truncated file is one ``BadInput`` line, never a traceback.

Libraries: PIL for JPEG / WebP and for PNG metadata and truncation checks; OpenCV for PNG
pixels (PIL cannot hold 16-bit RGB); tifffile for TIFF. Pixels are RGB(A) order.
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from engine.errors import BadInput, TooLarge

EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
              ".webp": "webp"}
FORMAT_EXT = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "webp": ".webp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = (b"sRGB", b"gAMA", b"cHRM", b"pHYs")           # besides iCCP / eXIf
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, software, date, artist, (c)


@dataclass
class Image:
    pixels: np.ndarray                  # HxW, HxWx3 or HxWx4; uint8 / uint16 / float32
    icc: Optional[bytes] = None
    exif: Optional[bytes] = None        # raw TIFF-structured EXIF, without the "Exif\0\0" prefix
    format: str = "png"
    extra: dict = field(default_factory=dict)   # png_chunks, tiff_tags, resolution


def format_for(path: str | Path, fmt: Optional[str] = None) -> str:
    """The file format from --format or the extension; a clear error for anything else."""
    if fmt:
        f = fmt.lower().lstrip(".")
        f = {"jpg": "jpeg", "tif": "tiff"}.get(f, f)
        if f not in FORMAT_EXT:
            raise BadInput(f"unknown format '{fmt}': use png, jpeg, tiff or webp")
        return f
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise BadInput(f"{Path(path).name}: unknown image format '{ext or '(none)'}': "
                       "use .png, .jpg, .tif or .webp")
    return EXTENSIONS[ext]


def _norm_exif(b: Optional[bytes]) -> Optional[bytes]:
    if not b:
        return None
    return b[len(_EXIF_PREFIX):] if b.startswith(_EXIF_PREFIX) else bytes(b)


# ------------------------------------------------------------------------------ PNG chunks
def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIG):
        raise BadInput("not a PNG file")
    out, i = [], 8
    while i + 8 <= len(data):
        n, typ = struct.unpack(">I4s", data[i:i + 8])
        out.append((typ, data[i + 8:i + 8 + n]))
        i += 12 + n
        if typ == b"IEND":
            break
    return out


def _chunk(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + typ + body + struct.pack(">I", zlib.crc32(typ + body) & 0xFFFFFFFF)


def _png_add_chunks(png: bytes, icc: Optional[bytes], exif: Optional[bytes], keep: list) -> bytes:
    """Insert metadata chunks right after IHDR (valid before PLTE/IDAT for all of them)."""
    n = struct.unpack(">I", png[8:12])[0]
    head_end = 8 + 12 + n
    extra = b""
    for typ, body in keep:
        if typ in _PNG_KEEP:
            extra += _chunk(typ, body)
    if icc:
        extra += _chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _chunk(b"eXIf", exif)
    return png[:head_end] + extra + png[head_end:]


# ------------------------------------------------------------------------------ reading
def probe(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only (cheap; for time estimates and limits)."""
    p = Path(path)
    fmt = format_for(p)
    try:
        if fmt == "tiff":
            import tifffile

            with tifffile.TiffFile(p) as t:
                pg = t.pages[0]
                return int(pg.imagewidth), int(pg.imagelength)
        import warnings

        from PIL import Image as PILImage

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(p) as im:
                return im.size
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "DecompressionBombError":
            raise TooLarge(f"{p.name}: the image is over the limit of what can be decoded ({_short(e)})") from None
        raise BadInput(f"{p.name}: cannot read the image header ({_short(e)})") from None


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:160]


def read(path: str | Path, *, max_mp: Optional[float] = None) -> Image:
    """Read an image file keeping depth, channels, ICC and EXIF."""
    p = Path(path)
    fmt = format_for(p)
    if not p.is_file():
        raise BadInput(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise BadInput(f"{p.name}: the file is empty")
    if max_mp is not None:
        w, h = probe(p)
        if w * h > max_mp * 1e6:
            raise TooLarge(f"{p.name}: {w}x{h} = {w * h / 1e6:.0f} MP is over the limit of {max_mp:g} MP")
    import warnings

    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            img = _read_any(p, fmt)
    except (BadInput, TooLarge):
        raise
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "DecompressionBombError":
            raise TooLarge(f"{p.name}: the image is over the limit of what can be decoded ({_short(e)})") from None
        raise BadInput(f"{p.name}: unreadable or truncated {fmt.upper()} file ({_short(e)})") from None
    px = img.pixels
    if px.ndim == 3 and px.shape[2] == 1:
        img.pixels = px[:, :, 0]
    if min(img.pixels.shape[:2]) == 0:
        raise BadInput(f"{p.name}: the image has no pixels")
    return img


def _read_any(p: Path, fmt: str) -> Image:
    if fmt == "tiff":
        return _read_tiff(p)
    if fmt == "png":
        return _read_png(p)
    return _read_pil(p, fmt)


def _pil_meta(im) -> tuple[Optional[bytes], Optional[bytes]]:
    return im.info.get("icc_profile") or None, _norm_exif(im.info.get("exif"))


def _read_png(p: Path) -> Image:
    import cv2
    from PIL import Image as PILImage

    data = p.read_bytes()
    with PILImage.open(p) as im:
        im.verify()                 # CRCs and a complete chunk stream: catches truncation
    with PILImage.open(p) as im:
        icc, exif = _pil_meta(im)
        mode = im.mode
    chunks = _png_chunks(data)
    if not any(t == b"IEND" for t, _ in chunks):
        raise BadInput(f"{p.name}: truncated PNG file (no end chunk)")
    if exif is None:
        exif = next((b for t, b in chunks if t == b"eXIf"), None)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise BadInput(f"{p.name}: unreadable PNG data")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    keep = [(t, b) for t, b in chunks if t in _PNG_KEEP]
    return Image(arr, icc, exif, "png", {"png_chunks": keep, "mode": mode})


def _read_pil(p: Path, fmt: str) -> Image:
    from PIL import Image as PILImage

    with PILImage.open(p) as im:
        icc, exif = _pil_meta(im)
        im.load()                   # raises "image file is truncated"
        mode = im.mode
        if mode in ("L", "RGB", "RGBA"):
            conv = im
        elif mode == "LA" or (mode == "P" and "transparency" in im.info):
            conv = im.convert("RGBA")
        elif mode == "CMYK":
            conv = im.convert("RGB")
            icc = None              # a CMYK profile does not describe the converted pixels
        else:
            conv = im.convert("RGB")
        arr = np.array(conv)
    return Image(arr, icc, exif, fmt, {"mode": mode})


def _read_tiff(p: Path) -> Image:
    import tifffile

    with tifffile.TiffFile(p) as t:
        pg = t.pages[0]
        arr = pg.asarray()
        tags = pg.tags
        icc = tags[34675].value if 34675 in tags else None
        text = {code: tags[code].value for code in _TIFF_TEXT_TAGS if code in tags}
        res = None
        if 282 in tags and 283 in tags:
            unit = tags[296].value if 296 in tags else 2
            res = (tags[282].value, tags[283].value, int(unit))
        planar_sep = pg.planarconfig == 2 and arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4)
        photometric = int(pg.photometric)
    if planar_sep:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] > 4:
        arr = arr[:, :, :4]
    if arr.ndim == 3 and arr.shape[2] == 2:      # gray + alpha
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    if arr.ndim not in (2, 3):
        raise BadInput(f"{p.name}: unsupported TIFF layout {arr.shape}")
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise BadInput(f"{p.name}: {arr.dtype} TIFF samples are not supported: use 8/16-bit or 32-bit float")
    if photometric == 0 and arr.dtype != np.float32:  # MinIsWhite
        arr = np.iinfo(arr.dtype).max - arr
    if isinstance(icc, np.ndarray):
        icc = icc.tobytes()
    return Image(np.ascontiguousarray(arr), bytes(icc) if icc else None, None, "tiff",
                 {"tiff_tags": text, "resolution": res})


# ------------------------------------------------------------------------------ writing
def _to_depth(px: np.ndarray, allowed: tuple) -> np.ndarray:
    """Convert to a depth the format can hold (e.g. 16-bit -> 8-bit for JPEG), rounding."""
    if px.dtype in allowed:
        return px
    from engine.pipeline.formats import from_float, to_float

    target = np.uint16 if np.uint16 in allowed else np.uint8
    return from_float(to_float(px), np.dtype(target))


def encode(img: Image, fmt: str) -> bytes:
    """Bytes for PNG / JPEG / WebP (TIFF is written straight to its file)."""
    px = img.pixels
    img = Image(px, img.icc, _norm_exif(img.exif), img.format, img.extra)
    if fmt == "png":
        import cv2

        px = _to_depth(px, (np.dtype(np.uint8), np.dtype(np.uint16)))
        if px.ndim == 3:
            px = cv2.cvtColor(px, cv2.COLOR_RGBA2BGRA if px.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", px, [cv2.IMWRITE_PNG_COMPRESSION, 6])
        if not ok:
            raise BadInput("PNG encoding failed")
        return _png_add_chunks(buf.tobytes(), img.icc, img.exif, img.extra.get("png_chunks", []))
    import io

    from PIL import Image as PILImage

    px = _to_depth(px, (np.dtype(np.uint8),))
    if fmt == "jpeg" and px.ndim == 3 and px.shape[2] == 4:
        raise BadInput("JPEG cannot hold transparency: use --format png, tiff or webp")
    im = PILImage.fromarray(px)
    kw: dict = {}
    if img.icc:
        kw["icc_profile"] = img.icc
    bio = io.BytesIO()
    if fmt == "jpeg":
        if img.exif:
            kw["exif"] = _EXIF_PREFIX + img.exif
        im.save(bio, "JPEG", quality=JPEG_QUALITY, subsampling=0, **kw)
    elif fmt == "webp":
        if img.exif:
            kw["exif"] = img.exif
        im.save(bio, "WEBP", quality=WEBP_QUALITY, method=4, **kw)
    else:
        raise BadInput(f"unknown format '{fmt}'")
    return bio.getvalue()


def _write_tiff(path: Path, img: Image) -> None:
    import tifffile

    px = img.pixels
    if px.ndim == 3 and px.shape[2] == 1:
        px = px[:, :, 0]
    # tifffile's extratags rows: (code, dtype: int or struct char, count, value, write once)
    extratags: list[tuple[int, int | str, int, bytes | str, bool]] = []
    if img.icc:
        extratags.append((34675, 7, len(img.icc), img.icc, True))
    kw: dict = {}
    for code, val in (img.extra.get("tiff_tags") or {}).items():
        if isinstance(val, str):
            if int(code) == 305:           # tifffile writes Software itself
                kw["software"] = val
            elif int(code) == 270:         # and ImageDescription
                kw["description"] = val
            else:
                extratags.append((int(code), "s", 0, val, True))
    res = img.extra.get("resolution")
    if res:
        kw["resolution"] = (res[0], res[1])
        kw["resolutionunit"] = res[2]
    if px.ndim == 2:
        photometric = "minisblack"
    else:
        photometric = "rgb"
        if px.shape[2] == 4:
            kw["extrasamples"] = ("unassalpha",)
    kw.setdefault("software", False)
    tifffile.imwrite(path, px, photometric=photometric, compression="zlib", extratags=extratags,
                     metadata=None, **kw)


def write(path: str | Path, img: Image, fmt: Optional[str] = None) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, rename over ``path``."""
    p = Path(path)
    fmt = format_for(p, fmt)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    try:
        if fmt == "tiff":
            os.close(fd)
            fd = -1
            _write_tiff(Path(tmp), img)
        else:
            data = encode(img, fmt)
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp makes 0600; a normal file is wanted
        os.replace(tmp, p)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def is_complete(path: str | Path) -> bool:
    """For --resume: the output exists and its header reads (writes are atomic)."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return False
    try:
        probe(p)
        return True
    except Exception:  # noqa: BLE001
        return False
