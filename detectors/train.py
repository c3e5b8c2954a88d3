"""Training loop for the network detectors, and ``train_detector`` for every detector.

:func:`fit_network`: AdamW + BCE on random crops; bf16/fp16 autocast on CUDA, fp32 on CPU;
channels_last always; DataLoader workers for larger sets; per-epoch validation AUC with
early stopping (the best epoch's weights are kept). It runs in :class:`deepaudit.trainer.
Trainer`: a checkpoint after every epoch (and on Ctrl-C, inside one), so a killed run (even
``kill -9``) resumes and ends with the same bits as an uninterrupted one — shuffling and
augmentation are seeded per (epoch, item), the rest is in the checkpoint. Under ``torchrun``
it trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA).

:func:`train_detector`: the whole job for any registered detector — split, fit, calibrate
the threshold to a target FPR on validation data, score the test split, save the folder,
and record everything in an mlflow run with the folder as an artifact and a registered
model version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.checkpoints import discard_checkpoint
from deepaudit.detectors.data import CropDataset, EpochSampler, ItemSet
from deepaudit.detectors.inference import score_items
from deepaudit.errors import DeepauditError
from deepaudit.trainer import RUN_MARKER, Trainer, TrainState, tracked_run

__all__ = ["fit_network", "train_detector"]

logger = logging.getLogger(__name__)


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: str) -> None:
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)


def run_options(det: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """The run options a network detector's ``fit`` passes on to :func:`fit_network` from its
    keyword arguments (device and precision default to the detector's own)."""
    return {
        "device": kw.pop("device", det.device),
        "precision": kw.pop("precision", det.precision),
        "checkpoint_dir": kw.get("checkpoint_dir"),
        "resume": kw.get("resume", True),
        "progress": kw.get("progress"),
        "log": kw.get("log"),
        "num_workers": kw.get("num_workers"),
        "sample_weights": kw.get("sample_weights"),
    }


def fit_network(
    det: Any,
    module: Any,
    train: ItemSet,
    val: ItemSet | None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 3,
    blur_p: float = 0.0,
    jpeg_p: float = 0.0,
    device: str = "auto",
    precision: str = "auto",
    num_workers: int | None = None,
    sample_weights: Any = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[dict[str, float], int], None] | None = None,
    dataset: Any = None,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    select: Callable[[Any, ItemSet], float] | None = None,
    select_name: str = "val_select",
) -> dict[str, Any]:
    """Train ``module`` (uint8 NCHW batch → logits (N, 1)); returns the training history.

    ``dataset`` and ``loss`` let other targets use the same loop: a dataset of
    ``(uint8 CHW, target, valid)`` (default: labelled crops) and ``loss_fn(output, target)``
    (default: binary cross-entropy of the one logit against the label), e.g. per-pixel
    masks for a localiser. ``select(det, val)`` (higher is better, logged as
    ``select_name``) picks the best epoch and drives early stopping instead of the image AUC,
    which saturates long before a localiser's maps are good.

    ``sample_weights`` (one per training item): each epoch draws items with probability
    ∝ weight, with replacement (group-balanced sampling, see audit/mitigation.py).
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from deepaudit.devices import device_policy, seed_everything

    # channels_last everywhere, as in inference: validation scoring between epochs converts
    # the module to it, and weights in another memory format take other CPU kernels (other
    # floats), so a run resumed from a checkpoint would drift from one never interrupted.
    policy = dataclasses.replace(device_policy(device, precision=precision), channels_last=True)
    _maybe_init_distributed(policy.device)
    rank, world = _dist()
    dev = policy.torch_device()
    if policy.is_cuda and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    seed_everything(det.seed)
    module = module.to(dev).to(memory_format=torch.channels_last)
    net = module
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda") if policy.amp_dtype == "float16" else None
    ds = dataset or CropDataset(
        train, det.input_size, train=True, seed=det.seed, blur_p=blur_p, jpeg_p=jpeg_p
    )
    workers = (
        num_workers if num_workers is not None else (0 if len(ds) < 2000 else policy.num_workers)
    )
    sampler = EpochSampler(
        len(ds), seed=det.seed, rank=rank, num_replicas=world, weights=sample_weights
    )
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=policy.pin_memory,
        persistent_workers=workers > 0,  # keep each worker's decoded images across epochs
        prefetch_factor=4 if workers > 0 else None,
    )
    steps_per_epoch = math.ceil(len(sampler) / batch_size)
    state = TrainState(
        modules={"model": module},
        stateful={"opt": opt, **({"scaler": scaler} if scaler is not None else {})},
        tensors={"best": None, "epoch": None},  # the best epoch's weights; the loss so far
        values={
            "history": {"epochs": [], "best_epoch": None, "best_val_auc": None},
            "bad_epochs": 0,
            "epoch": {},
        },
    )
    fit_args = {
        **({"target": type(ds).__name__} if dataset is not None else {}),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "patience": patience,
        "blur_p": blur_p,
        "jpeg_p": jpeg_p,
    }
    trainer = Trainer(
        checkpoint_dir,
        state,
        config={
            "detector": det.name,
            "params": det.params(),
            "fit": fit_args,
            "data": {"train": _digest(train), "val": _digest(val)},
            "sampling": None if sampler.p is None else hashlib.sha256(sampler.p).hexdigest(),
        },
        total=epochs * steps_per_epoch,
        checkpoint_every=steps_per_epoch,  # every epoch (and on Ctrl-C, inside one)
        resume=resume,
        writer=rank == 0,
        graceful=world == 1,  # all ranks must stop at the same step
        where=train.root,
    )
    batches: Iterator[Any] | None = None

    def step(i: int) -> dict[str, float]:
        nonlocal batches
        epoch, k = divmod(i, steps_per_epoch)
        if k == 0:
            state.values["epoch"] = {"steps": 0, "seen": 0, "skipped": 0, "seconds": 0.0}
            state.tensors["epoch"] = None
        if batches is None:  # an epoch starts, or a run resumes inside one
            sampler.set_epoch(epoch, start=k * batch_size)
            batches = iter(loader)
            net.train()
        t0 = time.perf_counter()
        acc = state.values["epoch"]
        x, y, valid = next(batches)
        n_valid = int(valid.sum())
        acc["skipped"] += len(valid) - n_valid
        if n_valid:
            if n_valid < len(valid):  # a broken file in the batch (rare): drop it
                keep = valid.bool()
                x, y = x[keep], y[keep]
            # straight from the pinned batch: the copy overlaps the previous step's compute
            x, y = x.to(dev, non_blocking=True), y.float().to(dev, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with policy.autocast():
                out = net(x)
            if loss_fn is not None:
                loss = loss_fn(out.float(), y)
            else:
                loss = F.binary_cross_entropy_with_logits(out.squeeze(1).float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            # no float(loss) per step: that would wait for the GPU every batch
            so_far = state.tensors["epoch"]
            total = loss.detach() if so_far is None else so_far["loss"].to(dev) + loss.detach()
            state.tensors["epoch"] = {"loss": total}
            acc["steps"] += 1
            acc["seen"] += len(y)
        acc["seconds"] += time.perf_counter() - t0
        if k + 1 < steps_per_epoch:
            return {}
        batches = None
        return end_of_epoch(epoch)

    def end_of_epoch(epoch: int) -> dict[str, float]:
        acc, history = state.values["epoch"], state.values["history"]
        if not acc["steps"]:
            raise DeepauditError(f"{train.root}: no readable training images")
        train_loss = float(state.tensors["epoch"]["loss"]) / acc["steps"]
        record: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_images_per_s": acc["seen"] * world / max(acc["seconds"], 1e-9),
            "skipped_broken": acc["skipped"],
        }
        improved = True
        if val is not None and len(val) and rank == 0:
            from deepaudit.detectors.metrics import ap, auc

            scores = score_items(det, val)
            ok = ~np.isnan(scores)
            y_val = val.labels[ok]
            record["val_auc"] = auc(y_val, scores[ok])
            record["val_ap"] = ap(y_val, scores[ok])
            key = "val_auc"
            if select is not None:  # the target's own measure picks the best epoch
                record[select_name] = float(select(det, val))
                key = select_name
            best = history.get("best_" + key)
            improved = best is None or (not math.isnan(record[key]) and record[key] > best)
        if rank == 0:
            if improved:
                history["best_val_auc"] = record.get("val_auc")
                if select is not None:
                    history["best_" + select_name] = record.get(select_name)
                history["best_epoch"] = epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
                state.tensors["best"] = best_state
                state.values["bad_epochs"] = 0
            else:
                state.values["bad_epochs"] += 1
            history["epochs"].append(record)
            if log is not None:
                log({k: v for k, v in record.items() if k != "epoch"}, epoch + 1)
        stop = state.values["bad_epochs"] >= patience
        if world > 1:
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=dev if dev.type == "cuda" else "cpu")
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            history["stopped_early"] = epoch + 1
            state.stop = True
        return {"train_loss": train_loss}

    def report(done: int, total: int, metrics: Mapping[str, float]) -> None:
        if progress is not None and rank == 0:
            progress(done, total)

    if world > 1:
        trainer.restore()
        _agree_on_resume(trainer, dev)
    trainer.fit(step, progress=report)
    if state.tensors["best"] is not None:
        module.load_state_dict(state.tensors["best"])
    return state.values["history"]


def _agree_on_resume(trainer: Trainer, dev: Any) -> None:
    """Every rank must resume at the step rank 0 resumes at. Only rank 0 writes checkpoints,
    so a node whose ``--out`` is not the folder rank 0 writes (a local disk, not a shared
    one) would start over while the others resume: other steps, a job that hangs."""
    import torch
    import torch.distributed as dist

    mine = torch.tensor([trainer.state.step], device=dev if dev.type == "cuda" else "cpu")
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    steps = [int(s.item()) for s in every]
    if len(set(steps)) > 1:
        seen = ", ".join(
            f"rank {r} at step {s}" if s else f"rank {r} none" for r, s in enumerate(steps)
        )
        raise DeepauditError(
            f"{trainer.checkpoint}: the ranks found different checkpoints ({seen}); on "
            "several nodes --out must be one folder that every node shares"
        )


def _digest(items: ItemSet | None) -> str | None:
    """What identifies a training set for the checkpoint guard: its ids and labels."""
    if items is None:
        return None
    text = "".join(f"{i.id}\t{i.label}\n" for i in items)
    return hashlib.sha256(text.encode()).hexdigest()


def _calibrate_on(det: Any, calib: Any, scores: np.ndarray, target_fpr: float) -> Any:
    """A Platt map fitted on the validation scores, so the detector's scores are calibrated
    probabilities the scan can fuse (None when val has under 5 items of a class)."""
    from deepaudit.detectors.calibration import fit_calibration
    from deepaudit.errors import DeepauditError

    ok = ~np.isnan(scores)
    try:
        cal = fit_calibration(
            scores[ok],
            calib.labels[ok],
            method="platt",
            target_fpr=target_fpr,
            threshold_before=det.threshold,
            bootstrap=200,
            fitted_on={"data": det.training_summary.get("threshold_from", "val"), "split": "val"},
        )
    except DeepauditError as exc:
        det.training_summary["calibration"] = f"none: {exc}"
        return None
    det.training_summary["calibration"] = "platt on the validation split (calibration.json)"
    return cal


def train_detector(
    det: Any,
    data: ItemSet,
    out_dir: str | os.PathLike[str],
    *,
    target_fpr: float = 0.05,
    tracker: Any = None,
    register_as: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    resume: bool = True,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Fit on the train split, calibrate on val, score test, save to ``out_dir``, track."""
    from deepaudit.detectors.metrics import binary_report, calibrate_threshold

    out = Path(out_dir)
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 writes and tracks
    if rank != 0:
        tracker = None
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    train.require_both_classes("training")
    if len(val):
        val.require_both_classes("validation")
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": len(train), "val": len(val), "test": len(test)}
    weights = fit_kwargs.get("sample_weights")
    shown = {k: v for k, v in fit_kwargs.items() if k != "sample_weights"}
    if weights is not None:
        if not getattr(det, "supports_sample_weights", False):
            raise DeepauditError(f"detector {det.name!r} does not train with sample weights")
        shown["sample_weights"] = f"{len(weights)} weights, {min(weights):.3g}..{max(weights):.3g}"
    params = {"detector": det.name, **det.params(), **shown, **sizes, "target_fpr": target_fpr}
    with tracked_run(
        tracker,
        "train-detector",
        run_name=f"{det.name}-{out.name}",
        tags={"detector": det.name},
        params=params,
        resume_marker=out / RUN_MARKER,
    ) as run:
        started = time.perf_counter()
        det.training_summary = {
            **det.training_summary,
            "train": train.summary(),
            "val": val.summary() if len(val) else None,
            "test": test.summary() if len(test) else None,
        }
        log = (lambda m, step: run.log_metrics(m, step=step)) if run is not None else None
        det.fit(
            train,
            val if len(val) else None,
            checkpoint_dir=out / "checkpoint",
            resume=resume,
            progress=progress,
            log=log,
            **fit_kwargs,
        )
        det.training_summary["seconds"] = round(time.perf_counter() - started, 2)
        if rank != 0:
            return {}
        metrics: dict[str, Any] = {}
        calib = val if len(val) else train
        # new weights: a calibration fitted to the old ones no longer holds, and the raw
        # threshold below must be set on raw scores
        det.calibration = None
        cal_scores = score_items(det, calib)
        ok = ~np.isnan(cal_scores)
        det.threshold = calibrate_threshold(calib.labels[ok], cal_scores[ok], target_fpr=target_fpr)
        det.training_summary["threshold_from"] = "val" if len(val) else "train"
        det.training_summary["target_fpr"] = target_fpr
        for name, part in (("val", val), ("test", test)):
            if len(part):
                s = score_items(det, part)
                ok = ~np.isnan(s)
                metrics[name] = binary_report(
                    part.labels[ok], s[ok], threshold=det.threshold, bootstrap=500
                ).to_json()
        det.metrics = metrics
        cal = _calibrate_on(det, calib, cal_scores, target_fpr)
        det.save_pretrained(out)
        from deepaudit.detectors.calibration import remove_calibration, write_calibration

        if cal is not None:
            write_calibration(out, cal)
            det.calibration = cal
        else:
            remove_calibration(out)  # a calibration left from earlier weights would be loaded
        discard_checkpoint(out / "checkpoint")  # only once the folder is written
        if run is not None:
            flat = {
                f"{split}_{k}": v
                for split, m in metrics.items()
                for k, v in m.items()
                if isinstance(v, (int, float)) and v is not None
            }
            run.log_metrics(flat)
            run.log_artifact(out, "detector")
            if register_as:
                metrics["registered_version"] = run.register_model(register_as, "detector")
            metrics["mlflow_run_id"] = run.run_id
        return metrics
