"""Training loop for the network detectors, and ``train_detector`` for every detector.

:func:`fit_network`: AdamW + BCE on random crops; bf16/fp16 autocast and channels_last on
CUDA, fp32 on CPU; DataLoader workers for larger sets; per-epoch validation AUC with early
stopping (the best epoch's weights are kept); a checkpoint after every epoch so a killed
run (even ``kill -9``) resumes with ``resume=True`` and ends where an uninterrupted run
would (shuffling and augmentation are seeded per epoch, not carried in state). Under
``torchrun`` it trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA).

:func:`train_detector`: the whole job for any registered detector — split, fit, calibrate
the threshold to a target FPR on validation data, score the test split, save the folder,
and record everything in an mlflow run with the folder as an artifact and a registered
model version.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepaudit.checkpoints import find_checkpoint, write_checkpoint
from deepaudit.detectors.data import CropDataset, EpochSampler, ItemSet
from deepaudit.detectors.inference import score_items
from deepaudit.errors import DeepauditError

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
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[dict[str, float], int], None] | None = None,
) -> dict[str, Any]:
    """Train ``module`` (uint8 NCHW batch → logits (N, 1)); returns the training history."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from deepaudit.devices import device_policy, seed_everything

    policy = device_policy(device, precision=precision)
    _maybe_init_distributed(policy.device)
    rank, world = _dist()
    dev = policy.torch_device()
    if policy.is_cuda and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    seed_everything(det.seed)
    module = module.to(dev)
    if policy.channels_last:
        module = module.to(memory_format=torch.channels_last)
    net = module
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda") if policy.amp_dtype == "float16" else None
    ds = CropDataset(train, det.input_size, train=True, seed=det.seed, blur_p=blur_p, jpeg_p=jpeg_p)
    workers = (
        num_workers if num_workers is not None else (0 if len(ds) < 2000 else policy.num_workers)
    )
    history: dict[str, Any] = {"epochs": [], "best_epoch": None, "best_val_auc": None}
    start_epoch = 0
    best_state = None
    bad_epochs = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and resume and find_checkpoint(ckpt) is not None:
        from safetensors.torch import load_file

        module.load_state_dict(load_file(ckpt / "model.safetensors"))
        blob = torch.load(ckpt / "state.pt", weights_only=True)
        opt.load_state_dict(blob["opt"])
        history = json.loads((ckpt / "history.json").read_text())
        start_epoch = len(history["epochs"])
        bad_epochs = int(blob["bad_epochs"])
        if (ckpt / "best.safetensors").is_file():
            best_state = load_file(ckpt / "best.safetensors")
        logger.info("resuming from epoch %d", start_epoch)

    sampler = EpochSampler(len(ds), seed=det.seed, rank=rank, num_replicas=world)
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
    total = epochs * steps_per_epoch
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, n_steps, seen, skipped = None, 0, 0, 0
        t0 = time.perf_counter()
        for step, (x, y, valid) in enumerate(loader):
            n_valid = int(valid.sum())
            skipped += len(valid) - n_valid
            if not n_valid:
                continue
            if n_valid < len(valid):  # a broken file in the batch (rare): drop it
                keep = valid.bool()
                x, y = x[keep], y[keep]
            # straight from the pinned batch: the copy overlaps the previous step's compute
            x, y = x.to(dev, non_blocking=True), y.float().to(dev, non_blocking=True)
            if policy.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with policy.autocast():
                logits = net(x).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            n_steps += 1  # no float(loss) per step: that would wait for the GPU every batch
            seen += len(y)
            if progress is not None and rank == 0:
                progress(epoch * steps_per_epoch + step + 1, total)
        if not n_steps:
            raise DeepauditError(f"{train.root}: no readable training images")
        train_loss = float(loss_sum) / n_steps
        if not math.isfinite(train_loss):
            raise DeepauditError(f"{train.root}: training diverged (loss {train_loss})")
        record: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_images_per_s": seen * world / max(time.perf_counter() - t0, 1e-9),
            "skipped_broken": skipped,
        }
        improved = True
        if val is not None and len(val) and rank == 0:
            from deepaudit.detectors.metrics import ap, auc

            scores = score_items(det, val)
            ok = ~np.isnan(scores)
            y_val = val.labels[ok]
            record["val_auc"] = auc(y_val, scores[ok])
            record["val_ap"] = ap(y_val, scores[ok])
            best = history["best_val_auc"]
            improved = best is None or (
                not math.isnan(record["val_auc"]) and record["val_auc"] > best
            )
        if rank == 0:
            if improved:
                history["best_val_auc"] = record.get("val_auc")
                history["best_epoch"] = epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
                bad_epochs = 0
            else:
                bad_epochs += 1
            history["epochs"].append(record)
            if log is not None:
                log({k: v for k, v in record.items() if k != "epoch"}, epoch + 1)
            if ckpt is not None:
                _checkpoint(ckpt, module, opt, best_state, history, bad_epochs)
        stop = bad_epochs >= patience
        if world > 1:
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=dev if dev.type == "cuda" else "cpu")
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            history["stopped_early"] = epoch + 1
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return history


def _checkpoint(ckpt: Path, module, opt, best_state, history, bad_epochs) -> None:
    import torch
    from safetensors.torch import save_file

    with write_checkpoint(ckpt) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
            tmp / "model.safetensors",
        )
        if best_state is not None:
            save_file({k: v.contiguous() for k, v in best_state.items()}, tmp / "best.safetensors")
        torch.save({"opt": opt.state_dict(), "bad_epochs": bad_epochs}, tmp / "state.pt")
        (tmp / "history.json").write_text(json.dumps(history, default=float))


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
    run_cm = None
    run = None
    if tracker is not None:
        run_cm = tracker.start_run(
            "train-detector", run_name=f"{det.name}-{out.name}", tags={"detector": det.name}
        )
        run = run_cm.__enter__()
        sizes = {"train": len(train), "val": len(val), "test": len(test)}
        run.log_params(
            {"detector": det.name, **det.params(), **fit_kwargs, **sizes, "target_fpr": target_fpr}
        )
    exc_info: tuple = (None, None, None)
    try:
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
        det.save_pretrained(out)
        ckpt = out / "checkpoint"
        if ckpt.exists():
            shutil.rmtree(ckpt)
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
    except BaseException as exc:
        exc_info = (type(exc), exc, exc.__traceback__)
        raise
    finally:
        if run_cm is not None:
            run_cm.__exit__(*exc_info)
