"""python compare.py A.pt B.pt [C.pt ...]: bitwise equality (torch.equal) of every tensor vs A."""
import sys

import torch

ref = torch.load(sys.argv[1], weights_only=True)
for other in sys.argv[2:]:
    o = torch.load(other, weights_only=True)
    bad = [f"{part}.{k}" for part in ("state", "grads") for k in ref[part]
           if k not in o[part] or not torch.equal(ref[part][k], o[part][k])]
    n = sum(len(ref[p]) for p in ("state", "grads"))
    maxdiff = max((float((ref["state"][k].double() - o["state"][k].double()).abs().max())
                   for k in ref["state"] if k in o["state"]), default=0.0)
    print(f"{sys.argv[1]} vs {other}: {'BITWISE EQUAL' if not bad else 'DIFFER'} "
          f"({n - len(bad)}/{n} tensors equal, max |weight diff| {maxdiff:.3e}, "
          f"ranks_equal={o.get('ranks_equal')})")
