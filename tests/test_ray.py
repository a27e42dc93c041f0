"""``--executor ray`` on a real local Ray cluster (two worker processes, started here): the same
report as the local run, several models in one call, an unreadable shard, and a worker killed
mid-scan."""

from __future__ import annotations

import json
import math
import os
import threading
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightlint
from weightlint.reporters.json_report import document

ray = pytest.importorskip("ray", reason="ray is in the test extra ([ray])")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def sharded(folder, size: int = 96, seed: int = 0, columns: int = 64):
    """Three shards with an index; a NaN (WL100) and a duplicate pair (WL502, model-level)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {f"model.layers.{i}.{n}.weight": (rng.standard_normal((size, columns)) * 0.05).astype(np.float32)
               for i in range(6) for n in ("q", "k", "v")}
    tensors["model.layers.2.q.weight"][0, 0] = np.nan
    tensors["model.layers.4.v.weight"] = tensors["model.layers.3.v.weight"].copy()
    names = sorted(tensors)
    weight_map = {}
    for index, group in enumerate([names[i::3] for i in range(3)], 1):
        shard = f"model-{index:05d}-of-00003.safetensors"
        save_file({name: tensors[name] for name in group}, str(folder / shard))
        weight_map.update({name: shard for name in group})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def comparable(report) -> dict:
    result = document(report)
    for key in ("seconds", "device"):
        result["summary"].pop(key)
    return result


def assert_same(local: dict, distributed: dict) -> None:
    """Identical but for float rounding (Ray's workers run BLAS on one thread): 1e-9 relative."""
    assert distributed["summary"] == local["summary"] and len(distributed["findings"]) == len(local["findings"])
    for expected, actual in zip(local["findings"], distributed["findings"], strict=True):
        assert_close(expected, actual, f"finding {expected['code']} {expected['tensor']}")
    assert distributed.keys() == local.keys() and distributed["tensors"].keys() == local["tensors"].keys()
    for name, entry in local["tensors"].items():
        assert_close(entry, distributed["tensors"][name], name)


def assert_close(expected, actual, where) -> None:
    if isinstance(expected, dict):
        assert expected.keys() == actual.keys(), where
        for key in expected:
            assert_close(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, float) and math.isfinite(expected):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-300), where
    else:
        assert actual == expected, where


def test_a_sharded_checkpoint_and_two_models_give_the_local_report(tmp_path):
    first, second = sharded(tmp_path / "first"), sharded(tmp_path / "second", seed=1)
    for targets in ([str(first)], [str(first), str(second)]):
        local = comparable(weightlint.check(*targets))
        distributed = comparable(weightlint.check(*targets, executor="ray"))
        assert_same(local, distributed)
        assert {f["code"] for f in local["findings"]} >= {"WL100", "WL502"}


def test_an_unreadable_shard_is_wl001_as_locally(tmp_path):
    folder = sharded(tmp_path / "model")
    shard = folder / "model-00002-of-00003.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 1000])  # the header promises more data than there is
    local = comparable(weightlint.check(str(folder)))
    assert "WL001" in {f["code"] for f in local["findings"]}
    assert_same(local, comparable(weightlint.check(str(folder), executor="ray")))


def test_a_worker_killed_mid_scan_still_gives_the_whole_report(tmp_path):
    import psutil

    import scipy.linalg  # noqa: F401 - its own BLAS must be loaded for the limit to reach it
    from threadpoolctl import threadpool_limits

    folder = sharded(tmp_path / "model", size=1200, columns=1200)  # tasks of seconds each
    # Ray's workers run BLAS on one thread: so does the reference, or the SVDs round differently
    # (the power-law α, a fit with a discrete xmin, then moves by ~1e-6).
    with threadpool_limits(limits=1, user_api="blas"):
        local = comparable(weightlint.check(str(folder), jobs=1))
    killed: list[int] = []

    def kill_a_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for process in psutil.process_iter(["pid", "cmdline"]):
                if any("_check_file" in part for part in (process.info["cmdline"] or [])):
                    os.kill(process.info["pid"], 9)
                    killed.append(process.info["pid"])
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    distributed = comparable(weightlint.check(str(folder), executor="ray"))
    killer.join()
    assert killed, "no worker was running a task to kill"
    assert_same(local, distributed)
