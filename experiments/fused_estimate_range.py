"""The fused kernel's render estimates as ranges (`xla_tools.estimate.render_range`), from a deviceless aot JSON.

PYTHONPATH=. python experiments/fused_estimate_range.py   (CPU only: reads experiments/results/aot_h200.json)
"""

import json
import pathlib
import sys

sys.path.insert(0, "experiments")
from liif_jax.configs.common import liif_spec
from liif_jax.models import build_model
from xla_tools import estimate

r = json.loads(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/results/aot_h200.json").read_text())
model = build_model(liif_spec("edsr-baseline", {}, hidden_list=(256,) * 4))
for c in r["renders"]:
    if c["est_s"] is None:
        continue
    lo, hi = estimate.render_range(c["est_s"], model, tuple(c["out_hw"]), c.get("decoder", "xla"))
    l2 = estimate.fused_kernel_l2_bytes(model, tuple(c["out_hw"])) if c.get("decoder") == "pallas" else 0
    print(
        c["case"],
        c["dtype"],
        c.get("decoder"),
        c["tile"],
        f"{1e3 * c['est_s']:.1f}",
        estimate.ms_range(lo, hi),
        f"L2 {l2 / 1e9:.1f} GB",
        f"occupancy {estimate.occupancy():.3f}",
    )
