"""The collaboration trace (see configs/trace.py for the run): who wrote each token of CoSpec's answers.

  python experiments/trace.py --config=configs/trace.py --workdir=runs/trace \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter

Picks test problems where CoSpec's answer is right and target-only's is wrong; prints them in color and writes
trace.html (self-contained) to --workdir.
"""

from cospec_jax import main

if __name__ == '__main__':
  main.run_script(config='configs/trace.py', workdir='runs/trace')
