"""The whole embedded experiment with one command: data, draft, target, arbiter (warm start + REINFORCE), table,
collaboration trace.

Run:
  python -m cospec_jax.main --config=configs/pipeline.py --workdir=runs/pipeline
Smoke (76 s on tiny models; exercised by the tests):
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
Runtime: 47 min 21 s on an idle 2-core CPU (AMD EPYC), install included, measured 2026-12-03 in one run from a clean
clone of 0853fe0 (install 1.2 min, data and draft 8.8 min, target 15.3 min, arbiter 8.8 min of which forking 1.8,
table 12.7 min, trace 0.5 min), on a machine about half as fast as the one where the earlier pair (the 0.10M draft)
took 22 min 31 s (44e1d52, 2026-12-02); today's pair has not been timed there (README). The README's table is a
later run of the arbiter, table and trace stages on that pair (2026-12-04: 7.2, 17.1 and 0.9 min, the forks reused);
smoke 76 s (idle). Since then the draft trains beside the target (train_pair_concurrently below): the two training
stages took 20.8 min against 23.5 min one after the other, back to back on that machine (2026-12-04), the same pair;
the whole command from a clean clone of 17a68bb, 38 min 12 s in a fast hour of that machine (install 0.9, data and
pair 19.7, arbiter 7.2, table 9.9, trace 0.5 min; the table's figures the same to the digit). With the arbiter's 100
REINFORCE steps (the seed study's; the same table), from a clean clone of 6e638b3, 33 min 2 s (2026-12-05: install
0.8, data and pair 18.1, arbiter 4.3, table 9.2, trace 0.6 min).
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
