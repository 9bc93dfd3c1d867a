"""``ptk train`` on real shards for every trainable family (tiny sizes, CPU).

The shards are ingested once per session with the real ``ptk ingest`` command from
``../shared/data``: six small CATH domains (27–68 residues; training crops them to 32) and three
qFit multiconformer models. For each family the tests show that two epochs write the metrics rows
and run folder of ``docs/run-folder.md``, and that the loss of a fixed small batch goes down when
the model overfits it (the model can learn); one Mini-Fold run is interrupted and resumed and must
give the uninterrupted run's metrics.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from ptk.pipelines.cli import main

CATH_DOMAINS = ("1a1hA01", "2j7jA03", "1rr7A02", "1au7A02", "1wzaA02", "1avyA00")
QFIT_MODELS = (
    "1G8A_multiconformer_model2.pdb",
    "3K0N_multiconformer_model2.pdb",
    "7A4M_cryoem_multiconformer_model2.pdb",
)
#: (version, shard kind)
FAMILIES = (
    ("v13", "cath"),
    ("v10", "cath"),
    ("contact-classifier", "cath"),
    ("qfitlatent", "qfit"),
    ("pallatom-refiner", "cath"),
)
#: settings that keep a tiny run at a few seconds on one core (the Mini-Fold versions on a frozen
#: random encoder: these runs test the engine, not what the stage-1 encoder gives)
FAST = ("max_length=32", "sample_every=2", "sample_steps=3", "sample_n=2", "progress=false", "encoder=random")


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: intra-op threads only oversubscribe them (and make timings noisy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ingest_cached(base: Path, shared: Path, kind: str) -> Path:
    """The session's shard dataset of ``kind``, ingested on first use by ``ptk ingest``."""
    out = base / f"shards_{kind}"
    if (out / "_manifest.json").is_file():
        return out
    if kind == "cath":
        inputs = [str(shared / "cath" / "dompdb" / d) for d in CATH_DOMAINS]
        extra = ["--splits", str(shared / "cath" / "chain_set_splits.json")]
    else:
        inputs = [str(shared / "qfit" / "qfit_models" / f) for f in QFIT_MODELS]
        extra = []
    main(["ingest", kind, *inputs, "--out", str(out), "--scheduler", "synchronous", *extra])
    assert (out / "_manifest.json").is_file()
    return out


def train_args(version: str, data: Path, out: Path, *extra: str, epochs: int = 2) -> list[str]:
    args = ["train", "--version", version, "--data", str(data), "--out", str(out), "--size", "tiny"]
    args += ["--epochs", str(epochs), "--device", "cpu"]
    for setting in FAST:
        args += ["--set", setting]
    return args + list(extra)


def trained_run(base: Path, shared: Path, version: str, kind: str = "cath", epochs: int = 2) -> Path:
    """A tiny run of ``version`` in the session folder, trained on first use."""
    out = base / "runs" / f"{version}_e{epochs}"
    if not (out / "checkpoints" / "last.pt").is_file():
        main(train_args(version, ingest_cached(base, shared, kind), out, epochs=epochs))
    return out


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


@pytest.mark.parametrize(("version", "kind"), FAMILIES)
def test_two_epochs_write_the_run_folder(
    version: str, kind: str, session_dir: Path, shared_data: Path
) -> None:
    run = trained_run(session_dir, shared_data, version, kind)
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        assert math.isfinite(float(row["train_loss"])) and math.isfinite(float(row["val_loss"]))
        assert row["status"] in ("NEW BEST", "pat 1")
        assert float(row["lr"]) > 0 and row["skipped_batches"] == "0"
        assert float(row["wall_time_s"]) > 0
    header = list(rows[0])
    terms = [c[6:] for c in header if c.startswith("train_") and c != "train_loss"]
    assert terms and all(f"val_{t}" in header for t in terms)
    for col in ("ddim_tm", "ddim_rmsd", "ddim_gdt_ts"):
        assert col in header

    config = json.loads((run / "config.json").read_text())
    assert config["version"] == version and config["size"] == "tiny"
    assert config["n_params"] > 0 and config["n_train"] >= 1 and config["n_val"] >= 1
    assert config["train"]["max_length"] == 32 and config["train"]["epochs"] == 2
    assert config["device"] == "cpu" and config["data"]["train"].endswith(f"shards_{kind}")
    for name in ("last.pt", "best.pt"):
        assert (run / "checkpoints" / name).is_file()
    assert "epoch 2" in (run / "train.log").read_text()

    if version in ("v13", "v10"):
        epoch = run / "samples" / "epoch_002"
        ids = sorted(p.stem for p in (epoch / "ref").glob("*.pdb"))
        assert len(ids) == min(2, config["n_val"])
        for method in ("ddim", "x0"):
            assert sorted(p.stem for p in (epoch / method).glob("*.pdb")) == ids
        with open(epoch / "eval.csv", newline="") as handle:
            scores = list(csv.DictReader(handle))
        assert len(scores) == 2 * len(ids) and all(0.0 <= float(s["tm"]) <= 1.0 for s in scores)
        assert rows[0]["ddim_tm"] == "" and 0.0 < float(rows[1]["ddim_tm"]) <= 1.0
        assert float(rows[1]["ddim_rmsd"]) > 0 and 0.0 <= float(rows[1]["ddim_gdt_ts"]) <= 1.0
    else:
        assert not (run / "samples").exists() and rows[1]["ddim_tm"] == ""
    if version == "qfitlatent":
        assert 0.0 <= float(rows[1]["val_chi_acc_1"]) <= 1.0 and float(rows[1]["val_nll"]) > 0
        # the residue-weighted NLL has its own column beside the loss term's
        assert header.count("val_nll") == 1 and float(rows[1]["val_nll_residue"]) > 0
    if version == "contact-classifier":
        assert header[-4:] == ["class_acc", "arch_acc", "contact_recall", "bce"]
        # the one validation chain here is a 48-residue helix: no Cα contact with |i - j| >= 6,
        # so its recall is undefined (empty); the definition is pinned in test_minifold.py
        assert rows[1]["contact_recall"] == "" or 0.0 <= float(rows[1]["contact_recall"]) <= 1.0
        assert float(rows[1]["bce"]) > 0
        for c in ("contact_precision", "top_l_long", "top_l5_long"):
            assert 0.0 <= float(rows[1][c]) <= 1.0, c


@pytest.mark.parametrize(("version", "kind"), FAMILIES)
def test_loss_goes_down_when_overfitting_a_fixed_batch(
    version: str, kind: str, session_dir: Path, shared_data: Path
) -> None:
    """The same two chains (cropped to 16 residues), the same noise draw every step (fixed
    generator and seed): 24 AdamW steps must bring the loss well below where it started (measured:
    every family is below 60% of its start by step 20)."""
    from ptk.models.optim import TrainConfig, build_optimizer, clip_by_module
    from ptk.models.tasks import get_task

    task = get_task(version, "tiny", {"max_length": 16})
    dataset = task.dataset(ingest_cached(session_dir, shared_data, kind), max_length=16, crop="first", seed=0)
    batch = task.collate([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model = task.build_model()
    cfg = TrainConfig.from_dict({"lr": 3e-3, "weight_decay": 0.0, "clip": task.train.clip})
    optimizer = build_optimizer(model, cfg)
    model.train()
    losses = []
    for _ in range(24):
        torch.manual_seed(0)
        loss, _ = task.loss(
            model, batch, epoch=1, step=0, training=True, generator=torch.Generator().manual_seed(0)
        )
        assert torch.isfinite(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_by_module(model, cfg.clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    start, end = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert end < 0.8 * start, (version, [round(x, 4) for x in losses])


def test_resume_after_interruption_matches_uninterrupted(
    session_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    """v13 (self-conditioning, CFG dropout, DDIM sampling at epoch 2): stop after epoch 1 as if
    pre-empted, resume in a new invocation; every metric equals the uninterrupted run's."""
    full = trained_run(session_dir, shared_data, "v13")
    data = ingest_cached(session_dir, shared_data, "cath")
    cut = tmp_path / "cut"
    main(train_args("v13", data, cut, "--set", "halt_after=1"))
    assert len(read_metrics(cut)) == 1
    main(["train", "--out", str(cut), "--resume", "--device", "cpu"])
    a, b = read_metrics(full), read_metrics(cut)
    assert len(a) == len(b) == 2
    for row_a, row_b in zip(a, b, strict=True):
        for key in row_a:
            if key != "wall_time_s":
                assert row_a[key] == row_b[key], (key, row_a[key], row_b[key])
    config = json.loads((cut / "config.json").read_text())
    assert len(config["resumed_at"]) == 1


def test_resume_refuses_to_change_the_recipe(session_dir: Path, shared_data: Path) -> None:
    run = trained_run(session_dir, shared_data, "qfitlatent", "qfit")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(run), "--resume", "--set", "lr=1"])
    assert exc.value.code == 1


def test_unknown_set_key_lists_allowed_keys(
    session_dir: Path, shared_data: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = ingest_cached(session_dir, shared_data, "qfit")
    with pytest.raises(SystemExit) as exc:
        main(train_args("qfitlatent", data, tmp_path / "x", "--set", "learning_rate=1"))
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "unknown --set key 'learning_rate'" in err and "train.lr" in err and "model.d_s" in err
    with pytest.raises(SystemExit):
        main(train_args("qfitlatent", data, tmp_path / "y", "--set", "model.n_blocks=two"))
    assert "n_blocks" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_data_parallel(
    session_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    """The same command under ``torchrun --nproc_per_node=2`` (gloo on CPU): each rank takes half
    of every epoch, gradients are averaged once per step, rank 0 alone writes the run folder, and
    an interrupted job resumed by a second torchrun reproduces the uninterrupted metrics."""
    import os
    import shutil
    import socket
    import subprocess

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = ingest_cached(session_dir, shared_data, "qfit")
    out = tmp_path / "ddp"
    args = train_args("qfitlatent", data, out)[1:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        "torchrun",
        "--nproc_per_node=2",
        f"--master_port={port}",
        "-m",
        "ptk.pipelines.cli",
        "train",
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("qfitlatent: 2 epochs") == 1  # rank 0 reports, rank 1 stays quiet
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(
        math.isfinite(float(r["train_loss"])) for r in rows
    )
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    per_rank = math.ceil(config["n_train"] / 2)  # DistributedSampler pads to equal shares
    assert state["global_step"] == 2 * per_rank and state["world_size"] == 2
    assert len(state["rng_by_rank"]) == 2

    # pre-empted after epoch 1 and resumed (both in one second torchrun job, to pay its start-up
    # once): the same metrics as the uninterrupted job
    cut = tmp_path / "cut"
    over = {s.split("=")[0]: s.split("=")[1] for s in FAST}
    script = tmp_path / "cut_and_resume.py"
    script.write_text(
        "from ptk.pipelines.train import run_training\n"
        f"run_training('qfitlatent', {str(data)!r}, {str(cut)!r}, size='tiny', epochs=2, device='cpu',"
        f" overrides={{**{over!r}, 'halt_after': '1'}})\n"
        f"run_training(None, None, {str(cut)!r}, resume=True, device='cpu')\n"
    )
    proc = subprocess.run(
        [*cmd[:3], str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads((cut / "config.json").read_text())["resumed_at"]) == 1
    for a, b in zip(rows, read_metrics(cut), strict=True):
        assert {k: v for k, v in a.items() if k != "wall_time_s"} == {
            k: v for k, v in b.items() if k != "wall_time_s"
        }


def test_every_registry_version_trains_an_epoch(session_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """The versions the tests above do not train (v11, v11b, v12, v12b: LR groups, per-module
    clipping, the pair-stack tripwire) run one tiny epoch with DDIM sampling."""
    from ptk.models.tasks import list_versions

    data = ingest_cached(session_dir, shared_data, "cath")
    covered = {v for v, _ in FAMILIES} | {"v14"}  # v14: test_sample.py
    others = [v for v in list_versions() if v not in covered]
    assert {"v11", "v11b", "v12", "v12b"} <= set(others)
    for version in others:
        out = tmp_path / version
        main(train_args(version, data, out, "--set", "sample_every=1", "--set", "sample_n=1", epochs=1))
        row = read_metrics(out)[0]
        assert math.isfinite(float(row["val_loss"])) and 0.0 < float(row["ddim_tm"]) <= 1.0, version
    config = json.loads((tmp_path / "v12b" / "config.json").read_text())
    assert config["train"]["tripwire_module"] == "pair_stack"
    assert config["train"]["clip"] == {"denoiser": 1.0, "pair_stack": 0.5, "aux_pair": 0.5, "*": 1.0}


@pytest.mark.gpu
def test_cuda_bf16_training(session_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """On CUDA the run trains under bf16 autocast (fp32 islands inside the model) without skipped
    batches, and samples."""
    data = ingest_cached(session_dir, shared_data, "cath")
    out = tmp_path / "cuda"
    args = train_args("v13", data, out, epochs=2)
    args[args.index("cpu")] = "cuda"
    main(args)
    rows = read_metrics(out)
    assert all(r["skipped_batches"] == "0" for r in rows) and float(rows[1]["ddim_tm"]) > 0
    assert json.loads((out / "config.json").read_text())["device"].startswith("cuda")


def test_a_frozen_encoder_version_needs_its_stage_1_run(
    session_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v13 conditions on the trained stage-1 ContactClassifier, frozen (the page). A fresh run
    with no stage-1 run beside it is refused with one line naming the missing run; with one
    beside it, the encoder holds that run's EMA weights and stays frozen; ``encoder=train``
    starts from them and trains them."""
    data = ingest_cached(session_dir, shared_data, "cath")
    runs = tmp_path / "runs"

    def args(out: Path, *extra: str) -> list[str]:
        base = train_args("v13", data, out, *extra, epochs=1)
        i = base.index("encoder=random")
        return base[: i - 1] + base[i + 1 :]

    with pytest.raises(SystemExit) as exc:
        main(args(runs / "v13"))
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.startswith("ptk: error: v13 conditions on the trained stage-1")
    assert len(err.strip().splitlines()) == 1 and str(runs / "contact-classifier") in err
    assert not (runs / "v13" / "checkpoints").exists()

    stage1 = trained_run(session_dir, shared_data, "contact-classifier")
    shutil.copytree(stage1, runs / "contact-classifier")
    trained = torch.load(stage1 / "checkpoints" / "best.pt", weights_only=True)["ema"]["module"]
    main(args(runs / "v13"))
    assert f"frozen encoder from {runs / 'contact-classifier'}" in (runs / "v13" / "train.log").read_text()
    main(args(runs / "v13-joint", "--set", "encoder=train"))
    for run, frozen in (("v13", True), ("v13-joint", False)):
        state = torch.load(runs / run / "checkpoints" / "last.pt", weights_only=True)["model"]
        encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        assert encoder.keys() == trained.keys()
        same = [torch.equal(encoder[k], trained[k]) for k in trained]
        assert all(same) if frozen else not all(same), run


def test_warm_start_from_the_parent_run(session_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """v14 initialises from a v13 run (the page: strict=False; the new backbone head from scratch)."""
    from ptk.models.tasks import get_task, load_partial

    parent = trained_run(session_dir, shared_data, "v13")
    data = ingest_cached(session_dir, shared_data, "cath")
    out = tmp_path / "v14"
    main(train_args("v14", data, out, "--set", f"init_checkpoint={parent}", "--set", "halt_after=1"))
    log = (out / "train.log").read_text()
    loaded, total = map(int, log.split("warm start: ")[1].split(" tensors")[0].split("/"))
    assert 0 < loaded < total  # shared modules loaded, the v14-only head not
    ema = torch.load(parent / "checkpoints" / "best.pt", weights_only=True)["ema"]["module"]
    model = get_task("v14", "tiny", {"max_length": 32}).build_model()
    load_partial(model, ema)
    own = model.state_dict()
    same = [k for k in ema if k in own and own[k].shape == ema[k].shape]
    assert len(same) == loaded and all(torch.equal(own[k], ema[k]) for k in same)


def test_minifold_validation_weights_do_not_depend_on_the_epoch(session_dir: Path, shared_data: Path) -> None:
    """Training weighs the bond term by the annealed β(e); validation uses the end-of-anneal weights,
    so the same weights give the same validation total at epoch 1 and epoch 8 (a comparable
    early-stopping criterion), while the training total differs."""
    from ptk.models.tasks import get_task

    task = get_task("v13", "tiny", {"max_length": 16})
    dataset = task.dataset(
        ingest_cached(session_dir, shared_data, "cath"), max_length=16, crop="first", seed=0
    )
    batch = task.collate([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model = task.build_model().eval()

    def total(epoch: int, training: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        with torch.no_grad():
            loss, terms = task.loss(
                model,
                batch,
                epoch=epoch,
                step=0,
                training=training,
                generator=torch.Generator().manual_seed(0),
            )
        return float(loss), float(terms["bond_weight"])

    (val_1, w_val_1), (val_8, w_val_8) = total(1, False), total(8, False)
    (train_1, w_train_1), (train_8, w_train_8) = total(1, True), total(8, True)
    assert w_val_1 == w_val_8 > w_train_8 > w_train_1
    assert val_1 == pytest.approx(val_8, rel=1e-6)
    assert train_1 != pytest.approx(train_8, rel=1e-6)


def test_per_module_gradient_norms_are_logged(session_dir: Path, shared_data: Path) -> None:
    """metrics.csv holds each clip entry's mean pre-clip gradient norm over the epoch (the
    page's per-module norms): v13 clips the denoiser, pair stack and aux stack apart, qFitLatent
    clips everything together."""
    for version, kind, names in (
        ("v13", "cath", ("denoiser", "pair_stack", "aux_pair", "rest")),
        ("qfitlatent", "qfit", ("all",)),
    ):
        rows = read_metrics(trained_run(session_dir, shared_data, version, kind))
        columns = [c for c in rows[0] if c.startswith("grad_norm_")]
        assert columns == [f"grad_norm_{n}" for n in names]
        for row in rows:
            for column in columns:
                assert math.isfinite(float(row[column])) and float(row[column]) > 0


def test_the_pages_validation_total_weighs_each_epoch_as_it_trains(
    session_dir: Path, shared_data: Path
) -> None:
    """val_weights = epoch (the page's Val Total): validation uses the epoch's annealed bond
    weight β(e), so the same weights give different totals at epoch 1 and epoch 8."""
    from ptk.models.tasks import get_task

    task = get_task("v13", "tiny", {"max_length": 16, "val_weights": "epoch"})
    dataset = task.dataset(
        ingest_cached(session_dir, shared_data, "cath"), max_length=16, crop="first", seed=0
    )
    batch = task.collate([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model = task.build_model().eval()
    weights = {}
    for epoch in (1, 8):
        with torch.no_grad():
            _, terms = task.loss(
                model, batch, epoch=epoch, step=0, training=False, generator=torch.Generator().manual_seed(0)
            )
        weights[epoch] = float(terms["bond_weight"])
    assert weights[1] < weights[8]
