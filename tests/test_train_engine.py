"""The training engine on a toy task (no model family, no shards): exact resume, NaN batches,
atomic checkpoints, schedules, per-module groups and clipping, the tripwire, ``--set`` typing."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from ptk.errors import ConfigError, PtkError
from ptk.models.optim import (
    EMA,
    TrainConfig,
    atomic_save,
    build_optimizer,
    build_scheduler,
    clip_by_module,
    load_checkpoint,
    lr_factor,
    module_matches,
)
from ptk.models.trainer import Trainer


class ToyModel(nn.Module):
    """Two named sub-modules so LR groups, clipping and the tripwire have something to address."""

    def __init__(self) -> None:
        super().__init__()
        self.denoiser = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16))
        self.pair_stack = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pair_stack(self.denoiser(x))[..., 0]


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0, nan_ids: tuple[int, ...] = ()) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
        self.nan_ids = nan_ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "idx": i}


class ToyTask:
    name, family = "toy", "toy"
    can_sample = False
    extra_columns = ("mae",)

    def __init__(self, nan_ids: tuple[int, ...] = (), explode: bool = False) -> None:
        self.nan_ids = set(nan_ids)
        self.explode = explode

    @staticmethod
    def collate(items: list[dict]) -> dict:
        return {
            "x": torch.stack([i["x"] for i in items]),
            "y": torch.stack([i["y"] for i in items]),
            "idx": torch.tensor([i["idx"] for i in items]),
            "length": torch.ones(len(items), dtype=torch.long),
        }

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        # noise from the RNG the trainer checkpoints: resume is only exact if that state is restored
        noise = (
            torch.randn(batch["x"].shape, generator=generator) * 0.01
            if generator is not None
            else (torch.randn(batch["x"].shape) * 0.01)
        )
        pred = model(batch["x"] + noise)
        mse = ((pred - batch["y"]) ** 2).mean()
        reg = 1e-3 * sum((p**2).sum() for p in model.parameters())
        total = mse + reg
        if training and self.nan_ids & set(batch["idx"].tolist()):
            total = total * float("nan")
        if training and self.explode:
            total = total + 1e6 * model.pair_stack.weight.sum() ** 2
        return total, {"mse": mse.detach(), "reg": reg.detach()}

    def extras(self, model, batch):
        pred = model(batch["x"])
        return {"mae": (float((pred - batch["y"]).abs().sum()), float(len(pred)))}


def _cfg(**kw) -> TrainConfig:
    base = {
        "epochs": 3,
        "batch_size": 4,
        "grad_accum": 2,
        "lr": 3e-2,
        "min_lr": 1e-4,
        "schedule": "warmup_constant_cosine",
        "warmup_epochs": 1,
        "constant_epochs": 1,
        "lr_groups": {"pair_stack": 3.0},
        "clip": {"denoiser": 1.0, "pair_stack": 0.5},
        "sample_every": 0,
        "progress": False,
        "patience": 10,
    }
    base.update(kw)
    return TrainConfig.from_dict(base)


def _run(tmp: Path, cfg: TrainConfig, task: ToyTask | None = None, resume: bool = False, seed_model: int = 0):
    torch.manual_seed(seed_model)
    model = ToyModel()
    trainer = Trainer(
        task or ToyTask(),
        model,
        cfg,
        tmp,
        ToyData(22),
        ToyData(8, seed=1),
        torch.device("cpu"),
        resume=resume,
    )
    return trainer, trainer.fit()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_metrics_rows_and_columns(tmp_path: Path) -> None:
    _, summary = _run(tmp_path, _cfg())
    rows = _rows(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0])[:5] == ["epoch", "train_mse", "train_reg", "val_mse", "val_reg"]
    for col in ("train_loss", "val_loss", "lr", "skipped_batches", "wall_time_s", "status", "ddim_tm", "mae"):
        assert col in rows[0]
    assert rows[0]["status"] == "NEW BEST"
    assert rows[0]["ddim_tm"] == ""  # not sampled
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and (
        tmp_path / "checkpoints" / "best.pt"
    ).is_file()
    assert summary["steps"] == 3 * math.ceil(math.ceil(22 / 4) / 2)


def test_resume_after_interruption_is_exact(tmp_path: Path) -> None:
    _run(tmp_path / "full", _cfg())
    _run(tmp_path / "cut", _cfg(halt_after=1))
    assert len(_rows(tmp_path / "cut")) == 1
    # a second process would rebuild the model from scratch: different init weights prove the
    # checkpoint, not the constructor, supplies them
    _run(tmp_path / "cut", _cfg(), resume=True, seed_model=123)
    full, cut = _rows(tmp_path / "full"), _rows(tmp_path / "cut")
    assert len(full) == len(cut) == 3
    for a, b in zip(full, cut, strict=True):
        for key in a:
            if key != "wall_time_s":
                assert a[key] == b[key], (key, a[key], b[key])
    sa = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    sb = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k])
        assert torch.equal(sa["ema"]["module"][k], sb["ema"]["module"][k])


def test_a_fresh_run_starts_its_own_metrics(tmp_path: Path) -> None:
    """A run folder left with a metrics row but no checkpoint (killed between the two in its
    first epoch) is not a run to resume; a fresh run there writes its own header and rows
    instead of appending under the old ones."""
    (tmp_path / "metrics.csv").write_text("epoch,old_column\n1,0.5\n")
    _run(tmp_path, _cfg(epochs=2))
    rows = _rows(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2"] and "old_column" not in rows[0]


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path: Path) -> None:
    _run(tmp_path, _cfg(epochs=2, halt_after=1))
    with open(tmp_path / "metrics.csv", "a") as handle:  # killed after the row, before the checkpoint
        handle.write("2" + ",x" * (len(_rows(tmp_path)[0]) - 1) + "\n")
    _run(tmp_path, _cfg(epochs=2), resume=True)
    assert [r["epoch"] for r in _rows(tmp_path)] == ["1", "2"]


def test_nan_batches_are_skipped_and_counted(tmp_path: Path) -> None:
    trainer, _ = _run(tmp_path, _cfg(epochs=1, batch_size=1, grad_accum=3), ToyTask(nan_ids=(0, 5, 7)))
    rows = _rows(tmp_path)
    assert rows[0]["skipped_batches"] == "3"
    assert math.isfinite(float(rows[0]["train_loss"]))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(torch.isfinite(p).all() for p in trainer.ema.module.parameters())


def test_tripwire_skips_exploding_pair_stack_steps(tmp_path: Path) -> None:
    trainer, summary = _run(
        tmp_path,
        _cfg(epochs=1, tripwire_module="pair_stack", tripwire_max_norm=10.0),
        ToyTask(explode=True),
    )
    rows = _rows(tmp_path)
    assert int(rows[0]["skipped_batches"]) == 6  # every micro-batch; no step taken
    assert summary["steps"] == 0


def test_tripwire_hard_halt_on_vanishing_gradient(tmp_path: Path) -> None:
    _, summary = _run(tmp_path, _cfg(epochs=3, tripwire_module="pair_stack", halt_min_norm=1e9, halt_steps=4))
    assert summary["halted"] and "pair_stack" in summary["halted"]
    assert _rows(tmp_path)[-1]["status"].startswith("HALT")


def test_v13_schedule_shape() -> None:
    cfg = TrainConfig.from_dict(
        {
            "schedule": "warmup_constant_cosine",
            "lr": 2e-5,
            "min_lr": 1e-6,
            "warmup_epochs": 3,
            "constant_epochs": 20,
            "epochs": 60,
        }
    )
    spe = 10
    assert lr_factor(cfg, 0, spe) == pytest.approx(0.01)
    assert lr_factor(cfg, 15, spe) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(cfg, 30, spe) == 1.0 and lr_factor(cfg, 229, spe) == 1.0
    assert lr_factor(cfg, 600, spe) == pytest.approx(1e-6 / 2e-5)
    mid = 230 + (600 - 230) // 2
    assert lr_factor(cfg, mid, spe) == pytest.approx((0.05 + 1.0) / 2, rel=1e-2)
    restarts = TrainConfig.from_dict({"schedule": "cosine_restarts", "restart_epochs": 15, "epochs": 45})
    assert lr_factor(restarts, 150, spe) == 1.0 and lr_factor(restarts, 149, spe) < 0.011


def test_lr_groups_and_module_matching() -> None:
    model = ToyModel()
    opt = build_optimizer(model, _cfg())
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["pair_stack"] == pytest.approx(9e-2) and lrs["*"] == pytest.approx(3e-2)
    assert module_matches("denoiser.backbone_head.w", "backbone_head")  # any depth (v14 bug)
    assert not module_matches("denoiser.backbone_headx.w", "backbone_head")
    with pytest.raises(ConfigError, match="backbone_head.*top-level modules: denoiser, pair_stack"):
        build_optimizer(model, _cfg(lr_groups={"backbone_head": 5.0}))


def test_per_module_clipping_is_independent() -> None:
    model = ToyModel()
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    norms = clip_by_module(model, {"denoiser": 1.0, "pair_stack": 0.5})
    assert norms["pair_stack"] > 0.5 and norms["denoiser"] > 1.0
    pair = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.pair_stack.parameters()]))
    den = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.denoiser.parameters()]))
    assert float(pair) == pytest.approx(0.5, rel=1e-4) and float(den) == pytest.approx(1.0, rel=1e-4)


def test_ema_tracks_weights() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)  # warm-up decay min(0.5, 2/11)
    expected = before + (1 - 2 / 11) * (model.weight - before)
    assert torch.allclose(ema.module.weight, expected)


def test_config_typing_and_unknown_keys() -> None:
    assert TrainConfig.from_dict({"lr": "1e-3", "epochs": "7", "amp": "off"}).epochs == 7
    with pytest.raises(ConfigError, match="allowed: .*batch_size"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ConfigError, match="epochs expects a int"):
        TrainConfig.from_dict({"epochs": "many"})
    with pytest.raises(ConfigError, match="LR schedule"):
        TrainConfig.from_dict({"schedule": "linear"})


def test_atomic_save_failure_leaves_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1, "w": torch.ones(10)}, path)

    def broken(obj, handle, *a, **k):  # the process "dies" half-way through the write
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(PtkError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.slow
def test_checkpoint_killed_mid_write_is_never_half_read(tmp_path: Path) -> None:
    """SIGKILL a process that rewrites an 8 MB checkpoint in a loop: whatever instant it dies,
    ``last.pt`` is one complete earlier version (its payload matches its counter)."""
    script = textwrap.dedent(
        f"""
        import torch
        from ptk.models.optim import atomic_save
        i = 0
        while True:
            i += 1
            atomic_save({{"i": i, "w": torch.full((2_000_000,), float(i))}}, {str(tmp_path / "last.pt")!r})
            print(i, flush=True)
        """
    )
    for delay in (0.4, 1.1):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # at least one complete save exists
        assert first.strip()
        time.sleep(delay / 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        state = load_checkpoint(tmp_path / "last.pt")
        assert torch.all(state["w"] == float(state["i"]))


class _WorseningTask(ToyTask):
    """Validation loss that rises every epoch: epoch 1 is the best there will be."""

    def loss(self, model, batch, *, epoch, step, training, generator=None):
        total, terms = super().loss(
            model, batch, epoch=epoch, step=step, training=training, generator=generator
        )
        if not training:
            total = total * 0 + float(epoch)
        return total, terms


def test_early_stopping_patience(tmp_path: Path) -> None:
    _, summary = _run(tmp_path, _cfg(epochs=6, patience=2), _WorseningTask())
    assert [r["status"] for r in _rows(tmp_path)] == ["NEW BEST", "pat 1", "EARLY STOP"]
    assert summary["halted"] == "early stop" and summary["best_epoch"] == 1
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 and load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 3


def test_resume_falls_back_to_best_when_last_is_unreadable(tmp_path: Path) -> None:
    _run(tmp_path, _cfg(epochs=3, halt_after=2), _WorseningTask())  # best = epoch 1, last = epoch 2
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 damaged")
    trainer, _ = _run(tmp_path, _cfg(epochs=3, patience=5), _WorseningTask(), resume=True)
    assert [r["epoch"] for r in _rows(tmp_path)] == ["1", "2", "3"]  # epoch 2 rerun from epoch 1's state
    assert trainer.epoch == 3 and load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 3


def test_ema_decay_with_and_without_the_warm_up() -> None:
    """One update from weights w0 towards w1: the page's EMA keeps 0.999 of w0; ptk's warm-up
    uses min(0.999, (1+1)/(10+1)) = 2/11 on the first update."""
    from ptk.models.optim import EMA

    model = torch.nn.Linear(3, 2)
    w0 = model.weight.detach().clone()
    for warmup, decay in ((False, 0.999), (True, 2.0 / 11.0)):
        with torch.no_grad():
            model.weight.copy_(w0)
        ema = EMA(model, 0.999, warmup=warmup)
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        expected = decay * w0 + (1.0 - decay) * (w0 + 1.0)
        torch.testing.assert_close(ema.module.weight, expected, rtol=0, atol=1e-6)
    assert TrainConfig.from_dict({"ema_warmup": "false"}).ema_warmup is False


def test_standard_error_of_the_mean_tm() -> None:
    """metrics.csv ddim_tm_se: sample standard deviation (ddof 1) over √n, against numpy."""
    import numpy as np

    from ptk.models.tasks import _standard_error

    tms = [0.31, 0.52, 0.47, float("nan"), 0.66]
    finite = np.array([0.31, 0.52, 0.47, 0.66])
    assert _standard_error(tms) == pytest.approx(finite.std(ddof=1) / np.sqrt(4), rel=1e-12)
    assert math.isnan(_standard_error([0.5])) and math.isnan(_standard_error([]))
    assert TrainConfig().sample_n == 64


def test_fp16_with_a_dynamic_loss_scale(tmp_path: Path) -> None:
    """amp = fp16 (the page's mixed precision): fp16 autocast with torch's GradScaler. At
    GradScaler's first scale (2^16) this model's scaled gradients overflow fp16: those steps are
    skipped (counted in skipped_batches) and the scale halves until steps go through; the model
    still learns, and the scale is in the checkpoint, so a resumed run continues with it."""
    trainer, _ = _run(tmp_path, _cfg(amp="fp16", epochs=4))
    rows = _rows(tmp_path)
    assert sum(int(r["skipped_batches"]) for r in rows) >= 2  # a step of two micro-batches at least
    assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() < 2.0**16
    assert float(rows[-1]["train_mse"]) < 0.6 * float(rows[0]["train_mse"])
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["loss_scaler"]["scale"] == trainer.scaler.get_scale()
    resumed = Trainer(
        ToyTask(), ToyModel(), _cfg(amp="fp16", epochs=5), tmp_path, ToyData(22), ToyData(8, seed=1),
        torch.device("cpu"), resume=True,
    )  # fmt: skip
    assert resumed.scaler.get_scale() == state["loss_scaler"]["scale"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").get("loss_scaler") is not None
    plain, _ = _run(tmp_path / "fp32", _cfg(epochs=1))
    assert not plain.scaler.is_enabled()
    with pytest.raises(ConfigError, match="amp mode"):
        TrainConfig.from_dict({"amp": "fp8"})


def test_every_group_decays_to_min_lr_as_the_page_says() -> None:
    """lr_floor = absolute (the page's eta_min = 1e-6 for every group): a group at 3x LR ends
    its cosine at min_lr, not at 3 x min_lr; relative keeps each group's share."""
    model = ToyModel()
    for floor, expected in (("absolute", {"*": 1e-4, "pair_stack": 1e-4}),
                            ("relative", {"*": 1e-4, "pair_stack": 3e-4})):  # fmt: skip
        cfg = _cfg(lr=1e-2, min_lr=1e-4, schedule="cosine", epochs=2, lr_floor=floor)
        opt = build_optimizer(model, cfg)
        sched = build_scheduler(opt, cfg, steps_per_epoch=5)
        for _ in range(10):
            opt.step()
            sched.step()
        ends = {g["name"]: g["lr"] for g in opt.param_groups}  # "pair_stack/no_decay" ...
        assert {k: ends[k] for k in expected} == pytest.approx(expected, rel=1e-6), ends
        assert ends["pair_stack/no_decay"] == pytest.approx(expected["pair_stack"], rel=1e-6)
        assert all(fn is None for fn in sched.state_dict()["lr_lambdas"])  # nothing to unpickle


def test_gradient_cosines_against_hand_computed_gradients() -> None:
    """Two terms with opposite gradients have cosine -1; a third's gradient is known in closed
    form; a term that does not touch the parameters has NaN cosines."""
    from ptk.models.optim import gradient_cosines

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    x = torch.tensor([3.0, -1.0])
    terms = {
        "up": (w @ x) ** 2,  # gradient 2 (w.x) x = 2 * 1 * x
        "down": -((w @ x) ** 2),
        "sum": w.sum() * 1.0,  # gradient (1, 1)
        "none": torch.tensor(1.0, requires_grad=True) * 2.0,
    }
    names, cosine, norms = gradient_cosines(terms, [w])
    assert names == ["up", "down", "sum", "none"]
    assert cosine[0, 1].item() == pytest.approx(-1.0)
    expected = float((x @ torch.ones(2)) / (x.norm() * torch.ones(2).norm()))
    assert cosine[0, 2].item() == pytest.approx(expected)
    assert norms[0].item() == pytest.approx(float(2 * x.norm())) and norms[3].item() == 0.0
    assert math.isnan(cosine[3, 0].item()) and math.isnan(cosine[0, 3].item())


class ToyTermsTask(ToyTask):
    def loss_terms(self, model, batch, *, epoch, generator=None):
        pred = model(batch["x"] + torch.randn(batch["x"].shape, generator=generator) * 0.01)
        return {
            "mse": ((pred - batch["y"]) ** 2).mean(),
            "reg": 1e-3 * sum((p**2).sum() for p in model.parameters()),
        }


def test_gradient_agreement_is_logged_without_changing_the_run(tmp_path: Path) -> None:
    """grad_cosine_every = 1 writes one grad_cosine.csv row per step and term pair, and the
    run's metrics are those of the same run without it (its own RNG stream); a resume drops the
    rows after its checkpoint."""
    _run(tmp_path / "plain", _cfg(), ToyTermsTask())
    _run(tmp_path / "logged", _cfg(grad_cosine_every=1), ToyTermsTask())
    plain, logged = _rows(tmp_path / "plain"), _rows(tmp_path / "logged")
    for a, b in zip(plain, logged, strict=True):
        assert {k: v for k, v in a.items() if k != "wall_time_s"} == {
            k: v for k, v in b.items() if k != "wall_time_s"
        }
    with open(tmp_path / "logged" / "grad_cosine.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = 3 * math.ceil(math.ceil(22 / 4) / 2)
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    assert all((r["term_a"], r["term_b"]) == ("mse", "reg") for r in rows)
    assert all(-1.0 <= float(r["cosine"]) <= 1.0 and float(r["norm_a"]) > 0 for r in rows)
    cut = tmp_path / "cut"
    _run(cut, _cfg(grad_cosine_every=1, halt_after=1), ToyTermsTask())
    with open(cut / "grad_cosine.csv", "a") as handle:  # a step logged after the checkpoint
        handle.write("2,99,mse,reg,0.5,1,1\n")
    _run(cut, _cfg(grad_cosine_every=1), ToyTermsTask(), resume=True)
    with open(cut / "grad_cosine.csv", newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == list(range(1, steps + 1))
