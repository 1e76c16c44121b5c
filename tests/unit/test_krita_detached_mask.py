"""The PSD template Krita 5.1 loads for its transparency masks (plugin/krita/enhancelayer/
detached_mask.py), read back by a reader written here from the PSD layout: every length field
must lead exactly to the next section and the file must end where the merged image does.
Inside real Krita 5.1.5 the template's mask is checked by tests/hosts/test_krita.py
(test_no_view_krita_51_still_masks, test_one_undo_in_the_full_app)."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "detached_mask", ROOT / "plugin" / "krita" / "enhancelayer" / "detached_mask.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        assert self.pos + size <= len(self.data), "read past the end"
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, n: int) -> None:
        assert self.pos + n <= len(self.data), "skip past the end"
        self.pos += n


def test_template_is_a_one_layer_psd_with_a_user_mask() -> None:
    psd = _module().template_psd()
    r = _Reader(psd)
    sig, version, channels, height, width, depth, mode = r.take(">4sH6xHIIHH")
    assert (sig, version, channels, height, width, depth, mode) == (b"8BPS", 1, 3, 1, 1, 8, 3)
    assert r.take(">I") == (0,) and r.take(">I") == (0,)          # colour mode data, resources
    (section_len,) = r.take(">I")
    section_end = r.pos + section_len
    (info_len,) = r.take(">I")
    info_end = r.pos + info_len
    (count,) = r.take(">h")
    assert count == 1
    top, left, bottom, right, n = r.take(">iiiiH")
    assert (top, left, bottom, right) == (0, 0, 1, 1)
    chans = [r.take(">hI") for _ in range(n)]
    assert sorted(c for c, _ in chans) == [-2, -1, 0, 1, 2], "alpha, RGB and the user mask"
    sig, key = r.take(">4s4s")
    assert (sig, key) == (b"8BIM", b"norm")
    r.skip(4)                                                     # opacity, clipping, flags, filler
    (extra_len,) = r.take(">I")
    extra_end = r.pos + extra_len
    (mask_len,) = r.take(">I")
    assert mask_len == 20
    mtop, mleft, mbottom, mright, default, flags = r.take(">iiiiBB2x")
    assert (mtop, mleft, mbottom, mright, default, flags) == (0, 0, 1, 1, 0, 0)
    (ranges_len,) = r.take(">I")
    r.skip(ranges_len)
    (name_len,) = r.take(">B")
    assert psd[r.pos:r.pos + name_len] == b"mask"
    r.skip(name_len)
    assert extra_end - r.pos == -(1 + name_len) % 4, "the name is padded to 4 bytes, then the record ends"
    r.pos = extra_end
    for _cid, length in chans:                                    # each: compression + data
        (compression,) = r.take(">H")
        assert compression == 0
        r.skip(length - 2)
    assert r.pos <= info_end and info_len % 2 == 0
    r.pos = info_end
    assert r.take(">I") == (0,)                                   # no global layer mask info
    assert r.pos == section_end
    (compression,) = r.take(">H")
    assert compression == 1                                       # RLE merged image
    counts = [r.take(">H")[0] for _ in range(channels * height)]
    r.skip(sum(counts))
    assert r.pos == len(psd), "the merged image ends the file"
