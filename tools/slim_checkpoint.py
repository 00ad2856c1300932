"""Drop the optimiser state from a training checkpoint (to move it between machines);
resuming from it restarts AdamW's moments. Usage: python tools/slim_checkpoint.py RUN_DIR..."""
import sys

import torch

for d in sys.argv[1:]:
    p = f"{d}/checkpoint.pt"
    st = torch.load(p, map_location="cpu", weights_only=True)
    st.pop("opt", None)
    torch.save(st, p)
    print(p, "slimmed")
