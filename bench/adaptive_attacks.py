"""ASSG/PDSG/SA-PGD vs APGD on a trained run (read only), first 100 test images: robust accuracy of each.

  python -m launch.train --config=launch/configs/default.py --workdir=/tmp/jsnn/default
  python bench/adaptive_attacks.py /tmp/jsnn/default 32/255 100     # WORKDIR EPS STEPS
"""
import sys
import time
import jax, jax.numpy as jnp, numpy as np
from jsnn import attacks, checkpoint, models
from jsnn import data as data_lib
from jsnn.attacks import adaptive

import fractions

workdir, eps_text, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
eps = float(fractions.Fraction(eps_text))
run = checkpoint.load_run(workdir)
f = models.logits_fn(run.model, run.variables)
x, y = data_lib.eval_arrays(run.config.data, "test", 100, 100, field="split")
x, y = jnp.asarray(x), jnp.asarray(y)
key = jax.random.PRNGKey(0)
runs = {
    f"apgd-ce{steps}": lambda: attacks.apgd(f, x, y, key, eps=eps, steps=steps),
    f"sapgd{steps} (model's own surrogate)": lambda: attacks.sapgd(f, x, y, key, eps=eps, steps=steps),
    f"sapgd{steps} + assg": lambda: attacks.sapgd(adaptive.assg(f), x, y, key, eps=eps, steps=steps),
    f"apgd-ce{steps} + pdsg": lambda: attacks.apgd(adaptive.pdsg(f), x, y, key, eps=eps, steps=steps),
    f"sapgd{steps} + pdsg": lambda: attacks.sapgd(adaptive.pdsg(f), x, y, key, eps=eps, steps=steps),
}
print(f"clean {float((jnp.argmax(f(x, None), -1) == y).mean()):.2f}", flush=True)
for name, fn in runs.items():
    t = time.time()
    xa = jax.block_until_ready(fn())
    acc = float((jnp.argmax(f(xa, None), -1) == y).mean())
    print(f"{name:40s} eps={eps_text} accuracy {acc:.2f}  ({time.time() - t:.1f}s incl. compile)", flush=True)
