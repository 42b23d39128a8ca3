#!/bin/bash
# median wall time of 5 fresh interpreters per import, niced; torch alone as the baseline
PY=${PLUMBING_VENV:-/tmp/plumbing_venv}/bin/python
for stmt in "import torch" "import lightning_fabric" "import lightning.fabric" "from lightning.fabric import Fabric" "import accelerate" "from accelerate import Accelerator"; do
  ts=()
  for i in 1 2 3 4 5; do
    s=$(date +%s.%N); nice -n 5 $PY -c "$stmt" 2>/dev/null; e=$(date +%s.%N)
    ts+=($(echo "$e - $s" | bc))
  done
  med=$(printf "%s\n" "${ts[@]}" | sort -n | sed -n 3p)
  echo "$stmt: median ${med}s  (runs: ${ts[*]})"
done
