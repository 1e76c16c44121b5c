"""The --ray command line, without a cluster: the optional ADDRESS, the checks made before any
file is touched, and where pixels travel by default."""
from __future__ import annotations

import pytest

from engine import cluster
from engine.cli import ray_flag_alone
from engine.errors import BadInput


@pytest.mark.parametrize("argv, want", [
    (["run", "in", "--ray", "-o", "out"], ["run", "in", "--ray=local", "-o", "out"]),
    (["run", "in", "-o", "out", "--ray"], ["run", "in", "-o", "out", "--ray=local"]),
    (["run", "--ray", "scans/", "-o", "out"], ["run", "--ray=local", "scans/", "-o", "out"]),
    (["run", "--ray", "auto", "in"], ["run", "--ray", "auto", "in"]),
    (["run", "--ray", "10.0.0.5:6379", "in"], ["run", "--ray", "10.0.0.5:6379", "in"]),
    (["run", "--ray", "ray://head.studio:10001", "in"], ["run", "--ray", "ray://head.studio:10001", "in"]),
    (["run", "in", "--", "--ray"], ["run", "in", "--", "--ray"]),       # after --: an input's name
])
def test_ray_flag_takes_an_optional_address(argv: list[str], want: list[str]) -> None:
    assert ray_flag_alone(argv) == want


@pytest.mark.parametrize("address, io, words", [
    ("scans/", "auto", "give nothing (a cluster on this machine), auto, HOST:PORT"),
    ("local", "nfs", "--ray-io nfs: choose one of auto, shared, store"),
])
def test_bad_ray_arguments_are_one_line(address: str, io: str, words: str) -> None:
    with pytest.raises(BadInput, match=words.replace("(", r"\(").replace(")", r"\)")):
        cluster.check_args(address, io, "cpu")


def test_pixels_travel_by_shared_paths_only_on_a_cluster_started_here() -> None:
    assert cluster.io_mode("local", "auto") == "shared"
    assert cluster.io_mode("auto", "auto") == "store"
    assert cluster.io_mode("ray://h:10001", "auto") == "store"
    assert cluster.io_mode("h:6379", "shared") == "shared"


def test_gpu_devices_reserve_a_gpu() -> None:
    assert cluster.wants_gpu("cuda") and cluster.wants_gpu("cuda:1") and cluster.wants_gpu("vulkan:0")
    assert not cluster.wants_gpu("cpu") and not cluster.wants_gpu("auto")


def test_a_retried_image_already_written_by_this_batch_is_not_written_again(tmp_path, coffee) -> None:
    """What a Ray worker does when Ray re-runs a task whose first worker died after renaming
    the output into place: the output is left alone (written once); an output older than the
    batch is redone, as the local batch does without --resume."""
    import os
    import time

    from engine import imageio
    from engine.batch import plan_batch

    src = tmp_path / "in.png"
    imageio.write(src, imageio.Image(coffee[:96, :128]))
    out = tmp_path / "out"
    plan = plan_batch([str(src)], "denoise", out)
    dst = plan.todo[0].dst
    started = time.time() - 1.0
    first = cluster.enhance_remote(plan.job, str(src), str(dst), started)
    assert first["status"] == "ok" and not first.get("again") and imageio.is_complete(dst)
    inode = dst.stat().st_ino
    again = cluster.enhance_remote(plan.job, str(src), str(dst), started)
    assert again["status"] == "ok" and again["again"] is True and dst.stat().st_ino == inode
    os.utime(dst, (started - 100, started - 100))            # from an earlier batch: redone
    redo = cluster.enhance_remote(plan.job, str(src), str(dst), started)
    assert not redo.get("again") and dst.stat().st_ino != inode


def test_a_bad_image_on_a_worker_is_the_local_batch_line(tmp_path) -> None:
    from engine.batch import plan_batch

    src = tmp_path / "cut.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    plan = plan_batch([str(src)], "denoise", tmp_path / "out")
    r = cluster.enhance_remote(plan.job, str(src), str(plan.todo[0].dst), 0.0)
    assert r["status"] == "user" and r["line"].startswith(f"[red]failed:[/] {src}: ")
    stored = cluster.enhance_remote(plan.job, str(src), str(plan.todo[0].dst), 0.0, data=src.read_bytes())
    assert stored["status"] == "user" and stored["line"] == r["line"]    # the user's path, not a temp one


def test_store_mode_sends_the_output_and_its_side_maps_back(tmp_path, coffee) -> None:
    """--ray-io store: the worker gets the input's bytes and returns the encoded output, review
    map and defect mask; nothing is written at the user's paths by the worker."""
    from engine import imageio
    from engine.batch import plan_batch

    src = tmp_path / "in.png"
    imageio.write(src, imageio.Image(coffee[:96, :128]))
    out = tmp_path / "out"
    plan = plan_batch([str(src)], "restore-dust", out, review=tmp_path / "reviews", defects=tmp_path / "masks")
    r = cluster.enhance_remote(plan.job, str(src), str(plan.todo[0].dst), 0.0, data=src.read_bytes())
    assert r["status"] == "ok", r
    assert set(r["files"]) == {"output", "review", "defects"}
    assert r["files"]["output"].startswith(b"\x89PNG") and r["files"]["review"].startswith(b"\x89PNG")
    assert not out.exists() and not (tmp_path / "reviews").exists()
