"""Static against continuous batching where the table decodes, on a finished pipeline run's pair and arbiter.

The table (evaluate.py) decodes its accuracy passes in consecutive chunks of `config.table.batch_size` rows (static
batching) or, with `config.table.continuous`, all of a split's problems through that many rows in one call, a
finished row refilled with the next waiting problem (decoding/continuous.py). Which decodes faster
depends on the workload (how far answer lengths spread) and on what a refill's prefill costs against a batched step,
so this measures it on the table's own workload: target-only, greedy SPD and CoSpec (the table's arbiter
checkpoint, at the smallest and largest lam of `config.table.lams`) over the validation problems, continuous
batching at each of `refills` (most freed rows refilled after a step, in one prefill call; 0: all of them), each
program compiled first and then timed in interleaved rounds (each figure its fastest round), and whether every mode
gives the same completions and counts of tokens and target calls (it must, for these deterministic rules).
Validation only: the test split is not read. Compiling is not timed here; it is what keeps the table on static
batches by default (configs/reproduce_table.py).

  python experiments/table_batching.py --config=configs/pipeline.py --workdir=runs/pipeline
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from cospec_jax import evaluate, files, pipeline, sharding
from cospec_jax.decoding import DecodeSettings
from cospec_jax.train import arbiter


def run(config: ml_collections.ConfigDict, workdir: str, rounds: int = 2, refills: tuple[int, ...] = (4, 0),
        out_path: str = '') -> dict:
  """`config`: the pipeline's (configs/pipeline.py); `workdir`: a run of it whose table stage is done. Prints a table
  and writes it as JSON to `out_path` (default <workdir>/table_batching.json); returns it."""
  dirs = pipeline.stage_dirs(config, workdir)
  a = config.arbiter
  if not os.path.exists(os.path.join(dirs['table'], 'results.json')):
    raise FileNotFoundError(f'{dirs["table"]}/results.json does not exist: run the pipeline with --workdir={workdir} '
                            'to its end first (this reads its pair, its arbiter and the checkpoint its table chose).')
  step, _ = pipeline.table_choice(dirs['table'])
  mesh = sharding.mesh_from_config(a)
  target, draft = arbiter.load_pair(a, mesh)
  task = arbiter.load_task(a, a.pair.target_workdir)
  validation = evaluate.split_problems(task, 'validation')
  if not validation:
    raise ValueError(f'task {task.name} has no validation split to time; this comparison reads validation only.')
  prompts = [task.prompt(p) for p in validation[:a.table.validation_examples]]
  settings = DecodeSettings.for_tokenizer(task.tokenizer, a.rl.max_new_tokens)
  candidates = evaluate.families(a, {'cospec': arbiter.restore_state(a, a.arbiter_workdir, step).params}, {})
  lams = (min(a.table.lams), max(a.table.lams))
  methods = (candidates['target-only'] + candidates['spd greedy'] +
             [m for m in candidates['cospec'] if m.lam in lams])
  batch = a.table.batch_size
  modes = {'static': settings} | {f'refills {k or "all"}': dataclasses.replace(settings, refills_per_step=k)
                                  for k in refills}
  passes = {(m.name, mode): evaluate.compiled_pass(m, target, draft, prompts, batch, s, a.rl.gamma, a.seed, mesh,
                                                   continuous=mode != 'static')
            for m in methods for mode, s in modes.items()}
  seconds_PxR, firsts, _ = evaluate.interleaved_rounds(list(passes.values()), rounds)
  seconds, outs = dict(zip(passes, seconds_PxR.min(1).tolist())), dict(zip(passes, firsts))
  rows = []
  for m in methods:
    static = outs[(m.name, 'static')]
    row = {'method': m.name, 'generated': static['generated'], 'seconds': {}, 'continuous_speedup': {},
           'identical': True}
    for mode in modes:
      row['seconds'][mode] = seconds[(m.name, mode)]
      row['continuous_speedup'][mode] = seconds[(m.name, 'static')] / seconds[(m.name, mode)]
      out = outs[(m.name, mode)]
      row['identical'] &= (len(out['completions']) == len(static['completions']) and all(
          np.array_equal(x, y) for x, y in zip(out['completions'], static['completions']))
          and (out['generated'], out['target_calls']) == (static['generated'], static['target_calls']))
    rows.append(row)
  result = {'problems': len(prompts), 'split': 'validation', 'batch_size': batch, 'gamma': a.rl.gamma,
            'arbiter_step': step, 'rounds': rounds, 'modes': list(modes), 'rows': rows}
  print(f'{len(prompts)} validation problems through {batch} rows, gamma {a.rl.gamma}, arbiter step {step}; '
        f'fastest of {rounds} interleaved rounds; seconds (continuous speedup over static)')
  print(f'{"method":>24} | ' + ' | '.join(f'{mode:>18}' for mode in modes) + ' | same completions')
  for r in rows:
    cells = [f'{r["seconds"][mode]:>7.2f} s ({r["continuous_speedup"][mode]:.2f}x)' for mode in modes]
    print(f'{r["method"]:>24} | ' + ' | '.join(f'{c:>18}' for c in cells) + f' | {str(r["identical"]):>16}')
  path = out_path or os.path.join(workdir, 'table_batching.json')
  files.write_atomically(path, json.dumps(result, indent=2))
  print(f'wrote {path}')
  return result
