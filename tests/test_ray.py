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
                if any("_check_records" in part for part in (process.info["cmdline"] or [])):
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


def checkpoint_run(folder, steps=(100, 200, 300)):
    """Sharded checkpoints of one training run; step 300 blows one layer up (WL701)."""
    rng = np.random.default_rng(2)
    weights = {f"model.layers.{i}.{n}.weight": (rng.standard_normal((48, 32)) * 0.05).astype(np.float32)
               for i in range(4) for n in ("q", "v")}
    for step in steps:
        weights = {k: v * 1.01 + rng.standard_normal(v.shape).astype(np.float32) * 1e-3 for k, v in weights.items()}
        if step == 300:
            weights["model.layers.2.q.weight"] = weights["model.layers.2.q.weight"] * 20
        target = folder / f"checkpoint-{step}"
        target.mkdir(parents=True)
        names = sorted(weights)
        weight_map = {}
        for index, group in enumerate([names[:4], names[4:]], 1):
            shard = f"model-{index:05d}-of-00002.safetensors"
            save_file({name: weights[name] for name in group}, str(target / shard))
            weight_map.update({name: shard for name in group})
        (target / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def test_diff_on_ray_gives_the_local_report(tmp_path):
    """One task per pair of shards (old, new); the WL7xx rules on the driver."""
    from weightlint.diff.engine import diff

    run = checkpoint_run(tmp_path / "run")
    old, new = str(run / "checkpoint-200"), str(run / "checkpoint-300")
    local = comparable(diff(old, new))
    distributed = comparable(diff(old, new, executor="ray"))
    assert_same(local, distributed)
    assert "WL701" in {f["code"] for f in local["findings"]}
    assert all("condition_number_ratio" in entry["diff"] for entry in local["tensors"].values())


@pytest.mark.parametrize("exact", [False, True], ids=["summaries", "exact"])
def test_watch_on_ray_gives_the_local_report(tmp_path, exact):
    """Each checkpoint summarized in its own task (read once, as locally) and compared here in step
    order; with --exact each pair of checkpoints is a task."""
    from weightlint.config import Config
    from weightlint.diff.watch import Watch

    run = checkpoint_run(tmp_path / "run")
    seen = []
    local = Watch([str(run)], Config(), exact=exact, spectra=True).run()
    distributed = Watch([str(run)], Config(executor="ray"), exact=exact, spectra=True,
                        on_checkpoint=lambda c, r: seen.append(c.step)).run()
    assert seen == [100, 200, 300]  # reports taken in step order, whatever order the tasks finish in
    assert_same(comparable(local), comparable(distributed))
    assert distributed.steps == local.steps and "WL701" in {f.code for f in distributed.findings}
    assert distributed.notes[0].replace(", in parallel on Ray)", ")") == local.notes[0] != distributed.notes[0]
    assert distributed.notes[1:] == local.notes[1:]


def test_a_large_file_is_split_into_several_tasks_with_the_same_report(tmp_path, monkeypatch):
    from weightlint.execution import ray_executor

    folder = sharded(tmp_path / "model")
    local = comparable(weightlint.check(str(folder)))
    groups = []
    split = ray_executor.task_groups
    monkeypatch.setattr(ray_executor, "TASK_VALUES", 96 * 64 * 2)  # two tensors a task
    monkeypatch.setattr(ray_executor, "task_groups", lambda records, limit: groups.append(split(records, limit))
                        or groups[-1])
    assert_same(local, comparable(weightlint.check(str(folder), executor="ray")))
    assert [len(group) for file_groups in groups for group in file_groups] == [2, 2, 2] * 3


def test_a_shard_gone_before_its_task_runs_is_wl001_as_locally(tmp_path):
    """A shard that a worker cannot open (deleted, or not on that node's shared path) is WL001 for
    each of its tensors, as a local read that fails; a shard missing from the start is WL006 either way."""
    from weightlint.config import Config
    from weightlint.execution import ray_executor

    codes = {}
    for executor in ("local", "ray"):
        folder = sharded(tmp_path / executor)
        os.remove(folder / "model-00002-of-00003.safetensors")
        report = weightlint.check(str(folder), config=Config(executor=executor))
        codes[executor] = sorted(f.code for f in report.findings)
    assert codes["ray"] == codes["local"] and "WL006" in codes["ray"]
    spec = {"run": "gone", "config": Config(), "config_file": None, "groups": ("finite", "norms"), "plans": ()}
    wanted = [("a.weight", "model/gone.safetensors", None, {}), ("b.weight", "model/gone.safetensors", None, {})]
    results = ray_executor._check_records(spec, str(tmp_path / "gone.safetensors"), wanted)
    assert [(name, problem.kind, problem.file, problem.tensor) for name, (_, _, problem) in results] == [
        ("a.weight", "unreadable", "model/gone.safetensors", "a.weight"),
        ("b.weight", "unreadable", "model/gone.safetensors", "b.weight")]


def test_ctrl_c_cancels_the_tasks_and_reports_what_finished(tmp_path):
    """KeyboardInterrupt as the first file's results arrive (raised by the progress callback, where
    Ctrl-C lands in the driver): the report holds that file's tensors, marked interrupted; the
    model-level rules did not run; no task of the run is left running."""
    import psutil

    from weightlint.config import Config
    from weightlint.execution.session import Session

    folder = sharded(tmp_path / "model", size=1500, columns=1500)  # tasks of seconds each
    arrived: list[int] = []

    def progress(record, done, total):
        arrived.append(done)
        raise KeyboardInterrupt

    report = Session([str(folder)], Config(executor="ray"), progress=progress).run()
    assert report.interrupted and len(arrived) == 1
    checked = {name for name, entry in report.tensors.items() if "norms" in entry}
    assert len(checked) == 6  # one shard's tensors, whole
    assert "WL502" not in {f.code for f in report.findings}  # a model-level rule: not run
    deadline = time.monotonic() + 3  # cancelled (their workers killed), not left to finish
    while time.monotonic() < deadline:
        running = [p for p in psutil.process_iter(["cmdline"])
                   if any("_check_records" in part for part in (p.info["cmdline"] or []))]
        if not running:
            break
        time.sleep(0.2)
    assert not running, "cancelled tasks are still running"


def test_sigint_to_the_command_line_exits_2_with_the_report(tmp_path):
    """The real thing: SIGINT to `weightlint check --executor ray` on this cluster mid-scan."""
    import signal
    import subprocess
    import sys

    import psutil

    folder = sharded(tmp_path / "model", size=1500, columns=1500)
    address = ray.get_runtime_context().gcs_address
    out = tmp_path / "report.json"
    child = subprocess.Popen([sys.executable, "-m", "weightlint", "check", str(folder), "--executor", "ray",
                              "--ray-address", address, "--format", "json", "-o", str(out), "--isolated"],
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and child.poll() is None:
        if any(any("_check_records" in part for part in (p.info["cmdline"] or []))
               for p in psutil.process_iter(["cmdline"])):
            break
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 2, stderr
    assert "interrupted" in stderr
    written = json.loads(out.read_text())
    assert written["summary"]["interrupted"] is True and written["summary"]["exit_code"] == 2


def test_watch_on_ray_skips_a_checkpoint_deleted_after_it_was_found(tmp_path):
    """A checkpoint gone when its task runs (save_total_limit) is not retried in vain: the task
    returns the failure, the checkpoint is tried here, then left out with a note, and the next one
    is compared with the last summary."""
    import shutil

    from weightlint.config import Config
    from weightlint.diff.watch import Checkpoint, Watch
    from weightlint.execution.ray_executor import TaskFailed, run_session

    run = checkpoint_run(tmp_path / "run", steps=(100, 200, 300))
    gone = Checkpoint(200, str(run / "checkpoint-200"))
    shutil.rmtree(gone.path)
    failed = run_session("summarize", ([gone.path],), Config(), None, False)
    assert isinstance(failed, TaskFailed) and "no such file" in str(failed)
    watch = Watch([str(run)], Config(executor="ray"))
    first = Checkpoint(100, str(run / "checkpoint-100"))
    watch._take(None, first, run_session("screen", ([first.path],), Config(), None, False), Config())
    watch._take(first, gone, failed, Config())
    assert watch.notes == [f"checkpoint-200: the Ray task failed ({failed}); linted on this machine",
                           f"checkpoint-200: not compared ({gone.path}: no such file or directory)"]
    last = Checkpoint(300, str(run / "checkpoint-300"))
    watch._take(gone, last, run_session("summarize", ([last.path],), Config(), None, False), Config())
    assert [(old.step, new.step) for old, new, _ in watch.compared] == [(200, 300)]
    assert "WL701" in {f.code for f in watch.compared[0][2].findings}  # against checkpoint-100's summary
