"""Pool workers end with their parent: a killed run leaves no process writing into its output folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_phantom_workers_exit_when_the_parent_is_killed(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["phantom_ct"].update(n_cases=12, spacing_inplane_mm=3.0, slice_mm_choices=[4.0], slice_mm_weights=[1.0], workers=2)
    params["data"]["folder"] = str(tmp_path / "phantom")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    parent = subprocess.Popen([sys.executable, "-m", "lmtransfer.cli", "phantom-ct", "--params", str(tmp_path / "params.yaml"),
                               "--quiet"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = tmp_path / "phantom" / "meta"
    deadline = time.monotonic() + 120
    while not (meta.is_dir() and any(meta.glob("case_*.json"))):  # the workers are busy
        assert parent.poll() is None and time.monotonic() < deadline, "the phantom run ended before it could be killed"
        time.sleep(0.1)
    workers = _children(parent.pid)
    assert len(workers) >= 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "pool workers outlived their parent"
    before = _snapshot(tmp_path / "phantom")
    time.sleep(3)  # a surviving worker would finish its case and write it now
    assert _snapshot(tmp_path / "phantom") == before


def _slow_task(folder: str, number: int) -> int:
    Path(folder, f"started_{number}").touch()
    time.sleep(0.5)
    return number


def test_an_interrupted_pool_cancels_its_queue_and_stops_its_workers(tmp_path):
    from lmtransfer.parallel import process_pool

    class Interrupted(Exception):
        pass

    workers = []
    try:
        with process_pool(2) as pool:
            results = pool.map(_slow_task, [str(tmp_path)] * 40, range(40))
            next(results)  # the first task is done: the workers are running
            workers = [p.pid for p in pool._processes.values()]
            raise Interrupted  # Ctrl-C or SIGTERM (SystemExit) while tasks are queued
    except Interrupted:
        pass
    started = len(list(tmp_path.glob("started_*")))
    time.sleep(1.5)
    assert len(list(tmp_path.glob("started_*"))) == started < 40  # the queue was dropped, nothing runs on
    assert workers and not any(_alive(pid) for pid in workers)
