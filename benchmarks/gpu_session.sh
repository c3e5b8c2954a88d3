#!/usr/bin/env bash
# The CUDA checks run on a lent GPU machine (see docs/benchmarks.md): the AMP/bf16,
# channels_last and DataLoader-worker paths of detector training, generator training and
# sampling, and the GPU-marked tests. Runs from the repository root without installing the
# package (PYTHONPATH=.); packages missing there come as wheels in .whl/.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:.
else
  export PYTHONPATH=.
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"

echo "== detector training, resnet50 224², AMP + channels_last + 8 workers"
timeout 200 python3 -m benchmarks.train --device cuda --model resnet50 --size 224 --workers 8 \
  | tee "$OUT/train_resnet50.json"
echo "== detector training, resnet10t 64² (the CPU default), same pipeline"
timeout 60 python3 -m benchmarks.train --device cuda --quick | tee "$OUT/train_quick.json"
echo "== generation: suite vs bare loop"
timeout 120 python3 -m benchmarks.generate --device cuda | tee "$OUT/generate.json"
echo "== generator training on CUDA: pixel DDPM 64², 300 steps"
timeout 120 python3 - <<'PY' | tee "$OUT/gen_train.json"
import json, time
from deepaudit.generators.training import TrainConfig, train_diffusion
for prec in ("fp32", "bf16"):
    cfg = TrainConfig(family="pixel", image_size=64, channels=(64, 128, 128), steps=300, batch_size=64)
    t = time.perf_counter()
    out = train_diffusion(cfg, f"/tmp/gen64-{prec}", device="cuda", precision=prec)
    meta = json.loads((out / "deepaudit.json").read_text())
    print(json.dumps({"precision": prec, "steps": 300, "seconds": meta["seconds"],
                      "steps_per_s": round(300 / meta["seconds"], 1)}))
PY
echo "== GPU-marked tests"
timeout 60 python3 -m pytest -q -m gpu tests/test_devices.py -p no:cacheprovider 2>&1 | tail -3
