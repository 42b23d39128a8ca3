"""What each library builds for AMP on this CPU machine (scaler or not)."""
from lightning.fabric import Fabric
from accelerate import Accelerator
for p in ["bf16-mixed", "16-mixed"]:
    try:
        f = Fabric(accelerator="cpu", devices=1, precision=p)
        pl = f._precision
        print("fabric", p, type(pl).__name__, "device", getattr(pl, "device", None), "dtype", getattr(pl, "_desired_input_dtype", None), "scaler", getattr(pl, "scaler", None))
    except Exception as e:
        print("fabric", p, "ERROR", type(e).__name__, str(e)[:150])
for mp in ["bf16", "fp16"]:
    try:
        a = Accelerator(cpu=True, mixed_precision=mp)
        print("accelerate", mp, "native_amp", a.native_amp, "scaler", a.scaler, "autocast_handler", a.autocast_handler)
    except Exception as e:
        print("accelerate", mp, "ERROR", type(e).__name__, str(e)[:150])
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(True)
