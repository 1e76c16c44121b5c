"""The TensorRT provider's settings (no GPU here, so only what they say is checked): engines and
timing cache in the user cache folder, fp16, and one shape profile that holds every tile the
tiler plans for that device."""
from __future__ import annotations

from engine.models import catalog
from engine.models.backends.onnx_backend import TRT_MAX_SIDE, TRT_MIN_SIDE, tensorrt_options
from engine.pipeline import tiling


def test_tensorrt_keeps_its_engines_in_the_cache_folder_in_fp16(engine_home):
    from engine import paths

    o = tensorrt_options("input")
    assert o["trt_fp16_enable"] == "True" and o["trt_engine_cache_enable"] == "True"
    assert o["trt_engine_cache_path"].startswith(str(paths.cache_dir()))
    assert o["trt_profile_max_shapes"] == f"input:1x3x{TRT_MAX_SIDE}x{TRT_MAX_SIDE}"
    assert o["trt_profile_min_shapes"] == f"input:1x3x{TRT_MIN_SIDE}x{TRT_MIN_SIDE}"


def test_every_tensorrt_tile_fits_the_engines_shape_profile():
    """A tile outside the profile would make TensorRT fail (or rebuild): the plan caps it, for
    the model with the largest tiles (no cap of its own) and a forced big tile too."""
    for mid, tile, capped in (("illustration-x2", None, True), ("photo-x2", None, False), ("photo-x2", 4000, True)):
        spec = catalog.get(mid)
        p = tiling.plan(spec, 6000, 8000, tile=tile, memory_budget=40 << 30, device="tensorrt")
        side = p.tile + 2 * p.overlap + 2 * spec.prepad + spec.align
        assert side <= TRT_MAX_SIDE, (mid, p)
        # the same plan on the CPU is not capped: the cap is TensorRT's
        cpu = tiling.plan(spec, 6000, 8000, tile=tile, memory_budget=40 << 30, device="cpu")
        assert (cpu.tile > p.tile) if capped else (cpu.tile == p.tile)
