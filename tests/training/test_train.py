import numpy as np
import pandas as pd

from lmtransfer.training.data import PatchSet, balanced_weights, class_order, select
from lmtransfer.training.metrics import summarise, most_confused, confusion
from lmtransfer.training.train import TrainConfig, predict, train_model


def toy(n_per_class=(60, 20, 120), seed=0):
    """Three classes told apart by a bright square in a different plane (background = noise)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, n in enumerate(n_per_class):
        x = rng.normal(0, 60, (n, 3, 16, 16))
        if label < 2:
            x[:, label, 4:12, 4:12] += 600
        xs.append(x)
        ys.append(np.full(n, label))
    x, y = np.concatenate(xs).astype(np.int16), np.concatenate(ys)
    rows = pd.DataFrame({"case": "c", "name": [["a", "b", "background"][v] for v in y], "variant": 0})
    return PatchSet(x, y, rows, ["a", "b", "background"])


def test_training_learns_and_is_deterministic():
    # 50 batches an epoch: BatchNorm running statistics need that many to settle
    cfg = TrainConfig(depth=2, width=8, feature_dim=32, max_epochs=3, epoch_patches=1600, batch_size=32, patience=3, threads=1)
    train, val = toy(seed=0), toy(seed=1)
    model, history = train_model(train, val, cfg, progress=None)
    assert history["val_top1"].max() > 0.95
    again, history2 = train_model(train, val, cfg, progress=None)
    assert "patches_per_second" not in history  # timing is logged, never part of the result
    pd.testing.assert_frame_equal(history, history2)
    scores = predict(model, val.x, cfg.normaliser)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)


def test_balanced_weights_equalise_classes():
    y = np.array([0] * 10 + [1] * 30 + [2] * 60)
    w = balanced_weights(y)
    assert np.allclose([w[y == c].sum() for c in range(3)], 1 / 3)


def test_select_leaves_out_landmarks_outside_the_class_list():
    patches = np.zeros((5, 3, 4, 4), np.int16)
    index = pd.DataFrame({"row": range(5), "case": ["a", "a", "b", "a", "a"], "name": ["x", "y", "x", "background", "x"], "variant": [0, 0, 0, 0, 1]})
    chosen = select(patches, index, ["a"], ["x", "background"], "clean")
    assert chosen.rows["row"].tolist() == [0, 3] and chosen.y.tolist() == [0, 1]
    assert len(select(patches, index, ["a"], ["x", "background"], "all")) == 3


def test_metrics():
    scores = np.array([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1, 1, 2])
    result = summarise(scores, y, ["a", "b", "background"])
    assert result["top1"] == 0.75 and result["top5"] == 1.0
    assert result["balanced_accuracy"] == (1 + 0.5 + 1) / 3
    assert result["landmark_called_background"] == 1 / 3 and result["background_called_landmark"] == 0
    pairs = most_confused(confusion(y, scores.argmax(1), 3), ["a", "b", "background"])
    assert pairs.iloc[0][["true", "predicted", "count"]].tolist() == ["b", "background", 1]


def test_class_order_is_seeded():
    names = [f"lm{i}" for i in range(30)] + ["background"]
    assert class_order(names, 1) == class_order(list(reversed(names)), 1)
    assert class_order(names, 1) != class_order(names, 2)
    assert "background" not in class_order(names, 1)


def test_training_leaves_the_callers_threads_and_rng_as_they_were():
    import torch

    cfg = TrainConfig(depth=2, width=4, feature_dim=8, max_epochs=1, epoch_patches=64, batch_size=32, threads=1, seed=3)
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before != 2 else 3)
    try:
        threads = torch.get_num_threads()
        torch.manual_seed(1234)
        state = torch.random.get_rng_state()
        train_model(toy(), toy(seed=1), cfg, progress=None)
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.random.get_rng_state(), state)
    finally:
        torch.set_num_threads(before)


def _two_classes(seed):
    """Class 1 a faint square (a hard task, so the validation AUC moves between epochs), class 0 noise."""
    data = toy((0, 40, 160), seed)
    noisy = np.random.default_rng(seed).normal(0, 200, data.x.shape).astype(np.int16)
    return PatchSet(data.x + noisy, (data.y == 1).astype(int), data.rows, ["background", "b"])


def test_selecting_on_validation_auc_keeps_the_epoch_of_the_best_auc():
    import pytest

    cfg = TrainConfig(depth=2, width=4, feature_dim=8, max_epochs=4, epoch_patches=256, batch_size=32, patience=4, threads=1)
    train, val = _two_classes(0), _two_classes(1)
    model, history = train_model(train, val, cfg, progress=None, select_on="auc")
    assert history["val_auc"].between(0, 1).all()
    assert int(history.loc[history["best"], "epoch"].iloc[0]) == int(history.loc[history["val_auc"].idxmax(), "epoch"])
    # the kept network is that epoch's: its validation AUC is the best one
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(val.y, predict(model, val.x, cfg.normaliser)[:, 1]) == pytest.approx(history["val_auc"].max(), abs=1e-6)
    _, by_top1 = train_model(train, val, cfg, progress=None)
    assert "val_auc" not in by_top1
    with pytest.raises(ValueError, match="select_on"):
        train_model(train, val, cfg, progress=None, select_on="loss")
