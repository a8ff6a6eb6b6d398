"""What every phantom set shares: per-case file layout, resumable rendering, cleanup of extra cases."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lmtransfer.parallel import process_pool


def temp_path(final: Path) -> Path:
    """Where ``final`` is written before an atomic rename: hidden, and private to this process, so a
    restart never writes into the temporary file of a worker that is still going down."""
    return final.with_name(f".tmp_{os.getpid()}_{final.name}")


def remove_stale_temps(out_dir: Path) -> None:
    """Temporary files of killed runs (they would change the folder's DVC hash)."""
    for sub in ("images", "labels", "landmarks", "meta"):
        for path in (Path(out_dir) / sub).glob(".tmp_*"):
            path.unlink(missing_ok=True)


def case_id(index: int) -> str:
    return f"case_{index:03d}"


@dataclass(frozen=True)
class CasePaths:
    """One case's files; the meta file is written last and marks the case complete."""

    image: Path
    labels: Path
    landmarks: Path
    meta: Path

    @classmethod
    def of(cls, out_dir: Path, cid: str) -> CasePaths:
        out_dir = Path(out_dir)
        return cls(
            out_dir / "images" / f"{cid}.nii.gz", out_dir / "labels" / f"{cid}.nii.gz",
            out_dir / "landmarks" / f"{cid}.mrk.json", out_dir / "meta" / f"{cid}.json",
        )

    def complete(self, fingerprint: str) -> bool:
        if not all(p.exists() for p in (self.image, self.labels, self.landmarks, self.meta)):
            return False
        try:
            return json.loads(self.meta.read_text()).get("fingerprint") == fingerprint
        except (json.JSONDecodeError, OSError):
            return False


def render_missing(render_and_write: Callable, cfg, out_dir: Path, n_cases: int, fingerprint: str, workers: int,
                   desc: str, progress: bool) -> None:
    """Call ``render_and_write(index, cfg, out_dir)`` for every case not yet complete with ``fingerprint``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(n_cases) if not CasePaths.of(out_dir, case_id(i)).complete(fingerprint)]
    remove_extra_cases(out_dir, n_cases)
    remove_stale_temps(out_dir)
    bar = tqdm(total=n_cases, initial=n_cases - len(todo), desc=desc, unit="case", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with process_pool(workers) as pool:
            for _ in pool.map(render_and_write, todo, [cfg] * len(todo), [out_dir] * len(todo)):
                bar.update()
    else:
        for i in todo:
            render_and_write(i, cfg, out_dir)
            bar.update()
    bar.close()


def remove_extra_cases(out_dir: Path, n_cases: int) -> None:
    """Cases beyond ``n_cases`` (from an earlier, larger run) would leak into later stages: remove them."""
    for sub, suffix in (("images", ".nii.gz"), ("labels", ".nii.gz"), ("landmarks", ".mrk.json"), ("meta", ".json")):
        folder = out_dir / sub
        if not folder.is_dir():
            continue
        for path in folder.glob(f"case_*{suffix}"):
            number = path.name[len("case_") : -len(suffix)]
            if number.isdigit() and int(number) >= n_cases:
                path.unlink()
