"""The whole embedded experiment with one command: data, draft, target, arbiter (warm start + REINFORCE), table,
collaboration trace.

Run:
  python -m cospec_jax.main --config=configs/pipeline.py --workdir=runs/pipeline
Smoke (under 2 min on tiny models; exercised by the tests):
  python -m cospec_jax.main --config=configs/pipeline.py:smoke --workdir=/tmp/pipeline_smoke
Each stage's fields are stated once, in the file that runs that stage alone, and read from there:
  config.target   configs/train_target.py    the data (all stages share it), the target's model, optimiser
  config.draft    configs/train_draft.py     the draft's model and seed (the rest as the target's)
  config.arbiter  configs/train_arbiter.py   policy, warm start, REINFORCE, gamma, mesh
  config.arbiter.table  configs/reproduce_table.py   validation/test sizes, each method's sweep, the lam grid
  config.arbiter.trace  configs/trace.py     which test problems the trace shows
Make it bigger: edit those files, or override on the command line, e.g. --config.target.model.d_model=256,
--config.target.train.steps=3000, --config.arbiter.rl.steps=400, --config.arbiter.table.num_examples=1000.
The data section is one object, the target's, shared by the draft and the arbiter: change it once for all.
Finished stages are skipped when the command is run again.
Runtime: 24 min 49 s on an idle 2-core CPU (AMD EPYC VM), install included, measured 2026-12-05 in the latest run
from a clean clone (49764aa: install 0.8 min, data 0.3, the pair 11.7 (the draft beside the target), arbiter 3.9,
table 7.7, trace 0.4); 27 min 47 s (a7cc667, the same results) and 30 min 20 s (a0d0474, the arbiter at 3e-4) earlier
that day: the same target, the same computation, trained in 11.7 to 15.4 min in four runs that day, so 25
minutes holds at the machine's faster hours (README, "Where the first command's time goes", has every run since
47 min 21 s on 2026-12-03); smoke 108 s (idle, 2026-12-05; 76 s on 2026-12-04 with long questions).
Reproduces: the README's comparison table under the validation protocol (results.json, table.md, pareto.png in
<workdir>/table; every choice on validation, test read once) and the collaboration trace
(<workdir>/trace/trace.html).
"""

import ml_collections

from cospec_jax import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a short version of the same thing."""
  config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  config.job = 'pipeline'  # What cospec_jax.main runs.
  config.data = ml_collections.ConfigDict(dict(data_dir=''))  # '' keeps the data set in <workdir>/tfds.
  # On a CPU, train the draft in a second process while the target trains (its output goes to
  # <workdir>/draft/train.log): one model's small operations leave part of a second core idle, and the pair comes
  # out the same to the bit, sooner (cospec_jax/train/beside.py). Ignored on an accelerator, which one process owns.
  config.train_pair_concurrently = True
  config.target = config_args.load(__file__, 'train_target', arg)
  config.draft = config_args.load(__file__, 'train_draft', arg)
  config.arbiter = config_args.load(__file__, 'train_arbiter', arg)  # Pair paths are set per workdir.
  # One data section, the target's, shared by every stage: --config.target.data.train_size=... changes all three.
  config.draft.data = config.arbiter.data = config.target.data
  config.arbiter.arbiter_workdir = ''  # Set to <workdir>/arbiter by the pipeline.
  config.arbiter.table = config_args.load(__file__, 'reproduce_table', arg).table
  config.arbiter.trace = config_args.load(__file__, 'trace', arg).trace
  return config
