"""Paper-scale runs: a pretrained Qwen2.5 draft/target pair on GSM8K, MBPP or HumanEval, by local checkpoint path.

Pairs: 0.5b-7b (Qwen2.5-0.5B-Instruct -> Qwen2.5-7B-Instruct) and 1.5b-32b (Qwen2.5-1.5B-Instruct -> 32B-Instruct).
The argument is PAIR,TASK[,TOPOLOGY] (TOPOLOGY in TOPOLOGIES, default v4-8: it picks the mesh). For gsm8k and mbpp
the run is the pipeline without the training of the pair: the arbiter (counterfactual warm start on training
problems, then REINFORCE), the table on the test split, the trace. HumanEval has no training split, so its config
only evaluates, with the arbiter trained on MBPP (set arbiter_workdir).

Run (on a TPU VM; see experiments/tpu/README.md for the launch on a pod):
  python -m cospec_jax.main --config=configs/paper.py:0.5b-7b,gsm8k --workdir=runs/0.5b-7b-gsm8k \
      --config.arbiter.pair.target_checkpoint=/ckpt/Qwen2.5-7B-Instruct \
      --config.arbiter.pair.draft_checkpoint=/ckpt/Qwen2.5-0.5B-Instruct \
      --config.arbiter.data.local_dir=/data/gsm8k
  python -m cospec_jax.main --config=configs/paper.py:0.5b-7b,humaneval --workdir=runs/0.5b-7b-humaneval \
      --config.arbiter_workdir=runs/0.5b-7b-mbpp/arbiter --config.pair.target_checkpoint=... (same pair)
Runtime: not measured here (no accelerator was available to this project's sessions); the tests load-check every
pair and task on tiny stand-in checkpoints, and run the smoke pipeline on them, in about 2 minutes on a 2-core
CPU. 'smoke' as the last field (e.g. 0.5b-7b,gsm8k,smoke) shrinks every count for such checks. Whether each pair
fits each topology's HBM was checked by compiling its loops for that TPU (experiments/tpu/compile_check.py; the
figures are in experiments/tpu/README.md).
"""

import ml_collections

from cospec_jax import config_args

# The `model` axis per topology (the batch takes the rest of the chips). It must divide the target's query heads (7B:
# 28, 32B: 40) so no head is split; the KV cache then splits over it by whole heads (sharding.kv_repeat). bfloat16
# weights: 7B ~15.2 GB, 32B ~65.5 GB; the axis is the smallest that leaves room on the chip's HBM for the KV caches.
# Rows: the most rows per decode call (2,048-token prompts, 384 new tokens, gamma 8) that compiled within the chips'
# HBM (experiments/tpu/README.md); every decode call of the run, the REINFORCE rollouts included, stays within it.
TOPOLOGIES = {
    # name: (chips, HBM GiB per chip, {pair: (model axis, rows)})
    'v5e-8': (8, 16, {'0.5b-7b': (4, 64), '1.5b-32b': (8, 32)}),  # 32B at 64 rows: over HBM.
    'v4-8': (4, 32, {'0.5b-7b': (2, 64), '1.5b-32b': (4, 32)}),  # 32B at 64 rows: over HBM.
    'v5p-8': (4, 95, {'0.5b-7b': (1, 64), '1.5b-32b': (2, 64)}),  # Rows not compiled at 64 x 2,048 yet.
    'v6e-8': (8, 32, {'0.5b-7b': (2, 64), '1.5b-32b': (4, 64)}),  # Rows not compiled at 64 x 2,048 yet.
    'v4-16': (8, 32, {'0.5b-7b': (2, 64), '1.5b-32b': (4, 64)}),  # Two hosts of 4 chips; rows as v6e-8.
}
DEFAULT_TOPOLOGY = 'v4-8'
PAIRS = {
    # name: (target, draft, {topology: (mesh model axis, rows per decode call)}).
    name: (target, draft, {t: axes[name] for t, (_, _, axes) in TOPOLOGIES.items()})
    for name, target, draft in (('0.5b-7b', 'Qwen2.5-7B-Instruct', 'Qwen2.5-0.5B-Instruct'),
                                ('1.5b-32b', 'Qwen2.5-32B-Instruct', 'Qwen2.5-1.5B-Instruct'))
}
TASKS = {
    # name: (max_new_tokens, warm-start problems, rows per decode call)
    'gsm8k': (384, 2000, 64),
    'mbpp': (384, 374, 64),
    'humaneval': (512, 0, 64),
}


def get_config(arg: str = '0.5b-7b,gsm8k') -> ml_collections.ConfigDict:
  """`arg`: 'PAIR,TASK[,TOPOLOGY][,smoke]' (PAIR in PAIRS, TASK in TASKS, TOPOLOGY in TOPOLOGIES, default
  DEFAULT_TOPOLOGY); '' and 'smoke' mean 0.5b-7b,gsm8k."""
  arg = {'': '0.5b-7b,gsm8k', 'smoke': '0.5b-7b,gsm8k,smoke'}.get(arg, arg)
  fields = arg.split(',')
  smoke = fields[-1:] == ['smoke']
  fields = fields[:-1] if smoke else fields
  if len(fields) == 2:
    fields.append(DEFAULT_TOPOLOGY)
  if len(fields) != 3 or fields[0] not in PAIRS or fields[1] not in TASKS or fields[2] not in TOPOLOGIES:
    raise ValueError(f'configs/paper.py:{arg}: expected PAIR,TASK[,TOPOLOGY][,smoke] with PAIR in {sorted(PAIRS)}, '
                     f'TASK in {sorted(TASKS)} and TOPOLOGY in {sorted(TOPOLOGIES)}, e.g. '
                     'configs/paper.py:0.5b-7b,gsm8k,v5e-8.')
  pair, task, topology = fields
  target, draft, layouts = PAIRS[pair]
  model_axis, rows = layouts[topology]
  max_new_tokens, warm_problems, batch_size = TASKS[task]
  batch_size = min(batch_size, rows)
  rollouts = 8  # Per prompt: REINFORCE decodes prompts_per_step * rollouts rows in one call.

  # The embedded arbiter's settings (configs/train_arbiter.py: policy, warm start, REINFORCE, mesh rules), with what
  # a real pair changes set below.
  small = 'smoke' if smoke else ''
  arbiter = config_args.load(__file__, 'train_arbiter', small)
  # Its policy reads the scalar features only (chosen on the embedded world's validation split, where hidden-state
  # projections overfit ~8,000 forks); --config.arbiter.policy.projection=16 adds both models' hidden states.
  arbiter.data = ml_collections.ConfigDict(dict(
      task=task,
      tokenizer_dir='',  # '' reads the target checkpoint's tokenizer.json / tokenizer_config.json.
      local_dir='',  # gsm8k: a directory with GSM8K's train.jsonl and test.jsonl; '' uses TFDS's gsm8k builder.
      data_dir='',  # TFDS data directory (gsm8k builder); set by the pipeline to <workdir>/tfds.
      shots=4,  # gsm8k: worked training examples before the question.
      chat=True,  # gsm8k: the prompt is the user turn of the chat template.
      path='',  # mbpp: the standard mbpp.jsonl.
  ))
  arbiter.pair = ml_collections.ConfigDict(dict(
      target_checkpoint=f'checkpoints/{target}',  # A Hugging Face checkpoint directory (config.json, safetensors).
      draft_checkpoint=f'checkpoints/{draft}',
      target_workdir='',
      draft_workdir='',
      dtype='float32' if smoke else 'bfloat16',  # Activations, KV cache and weights.
      scan_layers=True,  # Layers under one nn.scan: compile time does not grow with depth.
  ))
  arbiter.rl.update(dict(
      gamma=4 if smoke else 8,
      max_new_tokens=24 if smoke else max_new_tokens,
      max_decisions=16 if smoke else 64,
      prompts_per_step=2 if smoke else min(16, rows // rollouts),
      rollouts_per_prompt=2 if smoke else rollouts,
      steps=2 if smoke else 400,
      save_every=1 if smoke else 25,
  ))
  arbiter.warm_start.update(dict(problems=4 if smoke else warm_problems, batch_size=4 if smoke else batch_size,
                                 steps=5 if smoke else 1000))
  arbiter.mesh.update(dict(data=1 if smoke else -1, model=1 if smoke else model_axis))
  arbiter.table = config_args.load(__file__, 'reproduce_table', small).table  # Its sweeps; sizes set here.
  arbiter.table.update(dict(num_examples=4 if smoke else 10_000, batch_size=4 if smoke else batch_size))
  if smoke:  # Fewer rows: the checks are about loading and scoring, not about the relaxed rules.
    arbiter.table.relaxed = {}
    arbiter.table.lams = (0.0,)
  arbiter.table.timing.update(dict(problems=2 if smoke else 50))
  arbiter.trace = config_args.load(__file__, 'trace', small).trace
  arbiter.trace.update(dict(search=4 if smoke else 500, batch_size=4 if smoke else batch_size))

  if task == 'humaneval':  # Evaluation only: the table job, with an arbiter trained elsewhere.
    arbiter.job = 'reproduce_table'
    arbiter.arbiter_workdir = f'runs/{pair}-mbpp/arbiter'  # Workdir of the MBPP run's arbiter.
    # HumanEval has no validation split, so nothing is chosen on it: each method takes one setting. Set them to what
    # the MBPP run's table chose on MBPP's validation split (runs/{pair}-mbpp/table/results.json: each row's
    # `setting`, and `arbiter_step`); the values below are placeholders until then.
    arbiter.table.update(dict(temperatures=(0.7,), judge_max_harm=(0.3,), lams=(0.0,),
                              arbiter_step=-1))  # -1: the last step the arbiter stage recorded.
    if not smoke:
      arbiter.table.relaxed = dict(topk=dict(k=(2,)), threshold=dict(draft_confidence=(0.7,), target_floor=(0.1,)),
                                   fly=dict(min_entropy=(1.0,), window=(3,)))
    return arbiter
  config = ml_collections.ConfigDict()
  config.job = 'pipeline'
  config.data = ml_collections.ConfigDict(dict(data_dir=''))  # '' keeps TFDS data in <workdir>/tfds.
  config.arbiter = arbiter
  config.arbiter.arbiter_workdir = ''  # Set to <workdir>/arbiter by the pipeline.
  return config
