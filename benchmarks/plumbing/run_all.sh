#!/bin/bash
# Reproduces every check of README.md (about 5 min on 2 busy cores); venv: $PLUMBING_VENV.
set -e
cd "$(dirname "$0")"
VENV=${PLUMBING_VENV:-/tmp/plumbing_venv}
PY="nice -n 5 $VENV/bin/python"
TR="nice -n 5 $VENV/bin/torchrun --nproc_per_node=2"
rm -rf out ck && mkdir -p out ck
ck() { [ "$1" = accelerate ] && echo "ck/$2" || echo "ck/$2.pt"; }
echo "== 1. single process, fp32: uninterrupted 24 steps vs 10 + resume 14"
for lib in plain fabric accelerate; do
  $PY train_$lib.py --steps 24 --out out/${lib}_full.pt
  $PY train_$lib.py --steps 24 --stop-after 10 --ckpt $(ck $lib $lib) --out out/x.pt
  $PY train_$lib.py --steps 24 --resume --ckpt $(ck $lib $lib) --out out/${lib}_resumed.pt
done
$PY compare.py out/plain_full.pt out/plain_resumed.pt out/fabric_full.pt out/fabric_resumed.pt out/accelerate_full.pt out/accelerate_resumed.pt
echo "== negative controls: resume without RNG state must differ"
SKIP_RNG=1 $PY train_plain.py --steps 24 --resume --ckpt ck/plain.pt --out out/plain_norng.pt
cp -r ck/accelerate ck/acc_norng && rm ck/acc_norng/random_states_0.pkl
$PY train_accelerate.py --steps 24 --resume --ckpt ck/acc_norng --out out/acc_norng.pt   # exits 0, no message
$PY compare.py out/plain_full.pt out/plain_norng.pt out/acc_norng.pt
echo "== 2. torchrun --nproc_per_node=2 (gloo): 6 steps vs 3 + resume 3, and vs plain DDP"
for lib in plain fabric accelerate; do
  $TR train_$lib.py --steps 6 --out out/ddp_${lib}_full.pt
  $TR train_$lib.py --steps 6 --stop-after 3 --ckpt $(ck $lib ddp_$lib) --out out/x.pt
  $TR train_$lib.py --steps 6 --resume --ckpt $(ck $lib ddp_$lib) --out out/ddp_${lib}_resumed.pt
done
$TR train_accelerate.py --naive --steps 6 --stop-after 3 --ckpt ck/ddp_acc_naive --out out/x.pt
$TR train_accelerate.py --naive --steps 6 --resume --ckpt ck/ddp_acc_naive --out out/ddp_acc_naive_resumed.pt
$PY compare.py out/ddp_plain_full.pt out/ddp_plain_resumed.pt out/ddp_fabric_full.pt out/ddp_fabric_resumed.pt out/ddp_accelerate_full.pt out/ddp_accelerate_resumed.pt out/ddp_acc_naive_resumed.pt
echo "== 3. bf16 autocast on CPU, and fp16 asked for on CPU"
for lib in plain fabric accelerate; do
  $PY train_$lib.py --amp bf16 --steps 24 --out out/bf16_${lib}_full.pt
  $PY train_$lib.py --amp bf16 --steps 24 --stop-after 10 --ckpt $(ck $lib bf16_$lib) --out out/x.pt
  $PY train_$lib.py --amp bf16 --steps 24 --resume --ckpt $(ck $lib bf16_$lib) --out out/bf16_${lib}_resumed.pt
  $PY train_$lib.py --amp fp16 --steps 2 --out out/fp16_${lib}.pt
done
$PY train_plain.py --steps 2 --out out/fp32_plain_2.pt
$PY train_plain.py --amp bf16 --steps 2 --out out/bf16_plain_2.pt
$PY compare.py out/bf16_plain_full.pt out/bf16_plain_resumed.pt out/bf16_fabric_full.pt out/bf16_fabric_resumed.pt out/bf16_accelerate_full.pt out/bf16_accelerate_resumed.pt out/plain_full.pt
$PY compare.py out/fp32_plain_2.pt out/fp16_plain.pt out/fp16_fabric.pt out/fp16_accelerate.pt
$PY compare.py out/bf16_plain_2.pt out/fp16_fabric.pt
echo "== 4. Fabric defaults under torchrun"
$TR fabric_defaults_probe.py
echo "== 5. a flipped bit / truncation in a checkpoint"
$PY corrupt.py
