"""Decode-speed benchmark (prints a table, writes bench_decode.json). Not a test: timings vary by machine.

  python experiments/bench_decode.py --config=configs/bench_decode.py --workdir=runs/bench_decode

See configs/bench_decode.py for the pair (by path or by config) and the grid, cospec_jax/decode_benchmark.py for
what each column means.
"""

from cospec_jax import main

if __name__ == '__main__':
  main.run_script(config='configs/bench_decode.py', workdir='runs/bench_decode')
