"""Read and write image files without losing what a retoucher cares about.

- Bit depth is kept: uint8, uint16 (PNG, TIFF) and float32 (TIFF) come back as they were.
- Layout is kept: gray, gray+alpha, RGB, RGBA. Gray+alpha is read as RGBA (the pipeline takes
  1, 3 or 4 channels) with ``extra["layout"] = "gray+alpha"``, and written back as gray+alpha
  to PNG and TIFF (gray = Rec. 709 luma of R, G, B; exactly the gray when they are equal);
  WebP holds no gray+alpha and stays RGBA, JPEG refuses alpha.
- Animated / multi-page files (APNG, animated WebP, multi-page TIFF, multi-frame JPEG) are
  refused in one line: only one picture per file is enhanced, and silently keeping the first
  frame would lose the rest.
- The colour profile (ICC) and EXIF are carried as opaque bytes, untouched; PNG's other
  colour/physical chunks (sRGB, gAMA, cHRM, pHYs) and TIFF's descriptive tags (make,
  model, date, artist, copyright, description, resolution) are carried too. TIFF's EXIF
  sub-IFD is not rewritten (tifffile cannot write one back untouched); its make/model/date
  tags are.
- Writes are atomic: a temporary name in the target folder (``.NAME.<pid>.XXXXXXXX.part``),
  fsync, then ``os.replace``, so a crash never leaves a truncated file that looks complete;
  a temp left by a killed writer is recognised by its dead pid (remove_stale_temps). A write
  that fails on the user's disk (full, read-only, no permission) is one ``CannotWrite`` line
  and leaves no temp behind.
- An unreadable or truncated file is one ``BadInput`` line, never a traceback.

Libraries: PIL for JPEG / WebP and for PNG metadata and truncation checks; OpenCV for PNG
pixels (PIL cannot hold 16-bit RGB); tifffile for TIFF. Pixels are RGB(A) order.
"""
from __future__ import annotations

import errno
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from engine.errors import BadInput, CannotWrite, EnhanceError, TooLarge

EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
              ".webp": "webp"}
FORMAT_EXT = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "webp": ".webp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = (b"sRGB", b"gAMA", b"cHRM", b"pHYs")           # besides iCCP / eXIf
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, software, date, artist, (c)
GRAY_ALPHA = "gray+alpha"           # Image.extra["layout"]: the file was gray + alpha (pixels are RGBA)
# Rec. 709 / sRGB luma: the gray written back for a gray+alpha file whose R, G, B differ
_LUMA = (0.2126, 0.7152, 0.0722)
# our temporary names: .NAME.<writer pid>.<mkstemp's 8 random characters>.part
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{8}\.part")


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
        if i + 12 + n > len(data):
            break                   # a cut chunk (truncated file): not a chunk
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
            _refuse_multi_frame(p, fmt)
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


def _refuse_multi_frame(p: Path, fmt: str) -> None:
    """One picture per file: reading only the first frame of an animation or of a multi-page
    scan would silently drop the others, so such a file is refused with what to do."""
    n = _frame_count(p, fmt)
    if n > 1:
        what, unit = ("multi-page", "pages") if fmt == "tiff" else ("animated or multi-frame", "frames")
        raise BadInput(f"{p.name}: {what} {fmt.upper()} with {n} {unit}: only still images are enhanced; "
                       "export the frame you want as a still image")


def _frame_count(p: Path, fmt: str) -> int:
    """Pictures in the file. Not counted: TIFF reduced-resolution pages (NewSubfileType bit 0,
    pyramids / previews) and a JPEG's MPF large thumbnails (camera previews of the same photo)."""
    if fmt == "tiff":
        import tifffile

        with tifffile.TiffFile(p) as t:
            return sum(1 for pg in t.pages if not int(getattr(pg, "subfiletype", 0) or 0) & 1)
    from PIL import Image as PILImage

    with PILImage.open(p) as im:
        n = int(getattr(im, "n_frames", 1) or 1)
        if n > 1 and im.format == "MPO":
            entries = (getattr(im, "mpinfo", None) or {}).get(0xB002) or []
            kinds = [str(e.get("Attribute", {}).get("MPType", "")) for e in entries]
            n = max(1, sum(1 for k in kinds if "Thumbnail" not in k)) if kinds else n
        return n


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
    chunks = _png_chunks(data)
    if not any(t == b"IEND" for t, _ in chunks):
        raise BadInput(f"{p.name}: truncated PNG file (no end chunk)")
    _check_png_data_size(p, chunks)
    with PILImage.open(p) as im:
        icc, exif = _pil_meta(im)
        mode = im.mode
        im.load()                   # a bad stream raises here, in words; libpng would print to stderr
    if exif is None:
        exif = next((b for t, b in chunks if t == b"eXIf"), None)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise BadInput(f"{p.name}: unreadable PNG data")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    keep = [(t, b) for t, b in chunks if t in _PNG_KEEP]
    extra: dict = {"png_chunks": keep, "mode": mode}
    ihdr = next((b for t, b in chunks if t == b"IHDR"), b"")
    if len(ihdr) >= 10 and ihdr[9] == 4 and arr.ndim == 3 and arr.shape[2] == 4:
        extra["layout"] = GRAY_ALPHA          # colour type 4; OpenCV hands it over as RGBA
    return Image(arr, icc, exif, "png", extra)


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEFLATE_MAX_RATIO = 1100           # deflate cannot expand more than ~1032:1


def _check_png_data_size(p: Path, chunks: list[tuple[bytes, bytes]]) -> None:
    """A header whose pixels cannot fit in the file's compressed data (a corrupt or forged
    IHDR) is refused before the decoder allocates the whole image for it."""
    ihdr = next((b for t, b in chunks if t == b"IHDR"), b"")
    if len(ihdr) < 13:
        raise BadInput(f"{p.name}: corrupt PNG header")
    w, h, depth, ctype = struct.unpack(">IIBB", ihdr[:10])
    row = (w * _PNG_CHANNELS.get(ctype, 4) * max(depth, 1) + 7) // 8 + 1
    data = sum(len(b) for t, b in chunks if t == b"IDAT")
    if data * _DEFLATE_MAX_RATIO < h * row:
        raise BadInput(f"{p.name}: truncated or corrupt PNG ({w}x{h} pixels cannot come from "
                       f"{data} bytes of image data)")


def _read_pil(p: Path, fmt: str) -> Image:
    from PIL import Image as PILImage

    with PILImage.open(p) as im:
        icc, exif = _pil_meta(im)
        im.load()                   # raises "image file is truncated"
        mode = im.mode
        if mode in ("L", "RGB", "RGBA"):
            conv = im
        elif mode in ("LA", "La") or (mode == "P" and "transparency" in im.info):
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
    gray_alpha = arr.ndim == 3 and arr.shape[2] == 2
    if gray_alpha:                               # the pipeline takes RGBA; written back as 2 samples
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
    extra: dict = {"tiff_tags": text, "resolution": res}
    if gray_alpha:
        extra["layout"] = GRAY_ALPHA
    return Image(np.ascontiguousarray(arr), bytes(icc) if icc else None, None, "tiff", extra)


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
        if _wants_gray_alpha(img, px):
            png = _encode_png_gray_alpha(_gray_alpha(px))
            return _png_add_chunks(png, img.icc, img.exif, img.extra.get("png_chunks", []))
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


def _wants_gray_alpha(img: Image, px: np.ndarray) -> bool:
    """The input was gray+alpha and the pixels are still RGBA: write 2 channels back."""
    return img.extra.get("layout") == GRAY_ALPHA and px.ndim == 3 and px.shape[2] == 4


def _gray_alpha(px: np.ndarray) -> np.ndarray:
    """RGBA -> HxWx2 gray+alpha. Gray is the Rec. 709 luma of R, G, B (the sRGB weights), so a
    model that tinted a gray photo slightly gives its perceived brightness; where R = G = B it
    is that value exactly (integers by rounding, floats by taking R as is)."""
    rgb = px[..., :3]
    luma = (rgb[..., 0].astype(np.float32) * np.float32(_LUMA[0]) + rgb[..., 1] * np.float32(_LUMA[1])
            + rgb[..., 2] * np.float32(_LUMA[2]))
    if np.issubdtype(px.dtype, np.integer):
        top = np.iinfo(px.dtype).max
        g = np.clip(np.rint(luma), 0, top).astype(px.dtype)
    else:
        same = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
        g = np.where(same, rgb[..., 0], luma.astype(px.dtype))
    return np.ascontiguousarray(np.dstack([g, px[..., 3]]))


def _encode_png_gray_alpha(ga: np.ndarray) -> bytes:
    """A PNG of colour type 4 (gray+alpha), which OpenCV cannot write: IHDR, one zlib IDAT of
    rows each led by filter byte 0 (none), IEND; 16-bit samples big-endian as PNG wants."""
    h, w = ga.shape[:2]
    depth = 16 if ga.dtype == np.uint16 else 8
    rows = ga.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0)
    return _PNG_SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


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
    if _wants_gray_alpha(img, px):
        px = _gray_alpha(px)
        photometric = "minisblack"
        kw["extrasamples"] = ("unassalpha",)
    elif px.ndim == 2:
        photometric = "minisblack"
    else:
        photometric = "rgb"
        if px.shape[2] == 4:
            kw["extrasamples"] = ("unassalpha",)
    kw.setdefault("software", False)
    tifffile.imwrite(path, px, photometric=photometric, compression="zlib", extratags=extratags,
                     metadata=None, **kw)


def write(path: str | Path, img: Image, fmt: Optional[str] = None) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, rename over ``path``.

    Encoding happens before the disk is touched (an encoding error creates nothing). Any
    failure removes the temporary file; an OSError of the user's disk becomes CannotWrite."""
    p = Path(path)
    fmt = format_for(p, fmt)
    data = None if fmt == "tiff" else encode(img, fmt)
    return _write_atomic(p, data, img)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file already encoded elsewhere (a Ray worker's output that came back through the
    object store) by the same atomic rule as :func:`write`."""
    return _write_atomic(Path(path), bytes(data), None)


def _write_atomic(p: Path, data: Optional[bytes], img: Optional[Image]) -> Path:
    """``data`` (or ``img`` as TIFF when ``data`` is None) to a temporary name beside ``p``,
    fsync, rename over ``p``; see :func:`write`."""
    make_folder(p.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".part", dir=p.parent)
    except OSError as e:
        raise write_error(p, e) from None
    try:
        if data is None:
            assert img is not None, "nothing to write (bug)"
            os.close(fd)
            fd = -1
            _write_tiff(Path(tmp), img)
            fd = os.open(tmp, os.O_RDWR)
        else:
            _write_all(fd, data)
        os.fsync(fd)
        fd, closing = -1, fd              # closed once even if close fails (ENOSPC on NFS)
        os.close(closing)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp makes 0600; a normal file is wanted
        os.replace(tmp, p)
    except BaseException as e:
        if fd >= 0:
            with suppress(OSError):
                os.close(fd)
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_error(p, e) from None
        raise
    return p


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a signal, a nearly full disk): loop until done."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_WRITE_HINTS = {
    errno.ENOSPC: ("no space left on device", "free some space or choose another -o"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another -o"),
    errno.EFBIG: ("file too large for this file system", "choose another -o"),
    errno.EACCES: ("permission denied", "choose a folder you can write to with -o"),
    errno.EPERM: ("permission denied", "choose a folder you can write to with -o"),
    errno.EROFS: ("read-only file system", "choose a writable folder with -o"),
    errno.ENOTDIR: ("a file is in the way of the folder", "choose another -o"),
    errno.EEXIST: ("a file is in the way of the folder", "choose another -o"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter -o"),
    errno.EIO: ("input/output error on the device", "check the disk or choose another -o"),
}


def write_error(path: Path, e: OSError, what: str = "write") -> CannotWrite:
    """The user's disk said no: one line with the reason in plain words and what to do."""
    reason, hint = _WRITE_HINTS.get(e.errno or 0, (None, "check the disk or choose another -o"))
    if reason is None:
        reason = (os.strerror(e.errno) if e.errno else _short(e)).lower()
    return CannotWrite(f"cannot {what} {path}: {reason} — {hint}")


def make_folder(folder: Path) -> None:
    """Create an output folder (and its parents); a refusal of the disk is one CannotWrite line."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(Path(folder), e, "create the output folder") from None


def remove_stale_temps(outputs: Iterable[Path]) -> list[Path]:
    """Remove temporaries left by killed writers of these outputs (``kill -9`` gets no cleanup).

    Only names of our pattern for one of these outputs, whose writer pid is not alive, are
    removed: a live writer's temp and anyone else's files are never touched. (A pid reused by an
    unrelated process keeps the temp: safe, it goes on a later run.)"""
    wanted: dict[Path, set[str]] = {}
    for o in outputs:
        wanted.setdefault(Path(o).parent, set()).add(Path(o).name)
    removed: list[Path] = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue                      # no folder yet, or unreadable: nothing of ours to clean
        for ent in entries:
            m = _TEMP_RE.fullmatch(ent.name)
            if not m or m["name"] not in names or _pid_alive(int(m["pid"])):
                continue
            with suppress(OSError):
                if ent.is_file(follow_symlinks=False):
                    os.unlink(ent.path)
                    removed.append(Path(ent.path))
    return removed


def _pid_alive(pid: int) -> bool:
    """Is a process with this pid running (on this machine)? Unknown counts as alive."""
    if pid <= 0 or pid == os.getpid():
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True                       # EPERM: alive, someone else's
    return True


def is_complete(path: str | Path) -> bool:
    """For --resume: the output exists and decodes completely, with read()'s checks.

    Writes are atomic, but someone (a sync tool, a full disk elsewhere, a hand) may have cut a
    file afterwards and a header alone still reads: so the pixels are decoded too (one image
    at a time, so memory stays that of one image)."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return False
    try:
        read(p)
        return True
    except EnhanceError:
        return False
