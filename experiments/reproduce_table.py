"""Reproduces the paper's comparison table on the embedded pair (see configs/reproduce_table.py for the run).

  python experiments/reproduce_table.py --config=configs/reproduce_table.py --workdir=runs/table \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter

Prints the table; writes results.json, table.md and pareto.png to --workdir.
"""

from cospec_jax import main

if __name__ == '__main__':
  main.run_script(config='configs/reproduce_table.py', workdir='runs/table')
