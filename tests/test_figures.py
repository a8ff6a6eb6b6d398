"""The library draws without pyplot's global state: importing or plotting keeps the caller's backend."""

import subprocess
import sys

import numpy as np

from lmtransfer.figures import subplots

PLOTTING_MODULES = ("lmtransfer.training.metrics", "lmtransfer.phantoms.preview", "lmtransfer.phantoms.realism",
                    "lmtransfer.transfer.experiment", "lmtransfer.detection.plots", "lmtransfer.tuning.reports",
                    "lmtransfer.phantoms.head_mra")


def test_importing_the_plot_modules_keeps_the_backend():
    code = ("import matplotlib; matplotlib.use('pdf'); import importlib\n"
            f"for name in {PLOTTING_MODULES!r}: importlib.import_module(name)\n"
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "pdf"


def test_a_library_figure_is_written_and_left_out_of_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    from lmtransfer.training.metrics import save_confusion

    open_before = plt.get_fignums()
    save_confusion(np.eye(3, dtype=int) * 5, ["a", "b", "background"], tmp_path / "c.csv", tmp_path / "confusion.png", "test")
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert plt.get_fignums() == open_before
    figure, axes = subplots(1, 2, figsize=(4, 2))
    assert len(axes) == 2 and tuple(figure.get_size_inches()) == (4, 2)
