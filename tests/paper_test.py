"""The paper-scale configs (configs/paper.py) load-checked on tiny stand-ins the test makes: Qwen2-architecture
checkpoints whose heads are padded differently (as Qwen2.5-0.5B's and 7B's are), a byte-level BPE tokenizer with a
ChatML template, GSM8K-format and MBPP-format files. Every pair and task loads, prompts, decodes losslessly and scores;
one pair runs the whole pipeline (arbiter, table, trace) on GSM8K."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.models import init_params, save_hf_checkpoint
from cospec_jax.train import arbiter
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'configs'))
import paper  # noqa: E402

GSM8K_ROWS = [
    {'question': 'Tom has 3 apples and buys 4 more. How many apples does he have?',
     'answer': 'He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7'},
    {'question': 'A box holds 6 pens. How many pens are in 2 boxes?', 'answer': '6 * 2 = <<6*2=12>>12\n#### 12'},
    {'question': 'Sara had 10 cookies and ate 3. How many are left?', 'answer': '10 - 3 = <<10-3=7>>7\n#### 7'},
    {'question': 'Each of 5 kids gets 2 balloons. How many balloons?', 'answer': '5 * 2 = <<5*2=10>>10\n#### 10'},
    {'question': 'Ben walks 2 miles a day for 4 days. How far does he walk?', 'answer': '2 * 4 = <<2*4=8>>8\n#### 8'},
]
MBPP_ROWS = [{'task_id': i, 'text': f'Write a function to add {i} to a number.', 'code': f'def f(x):\n  return x + {i}',
              'test_list': [f'assert f(1) == {1 + i}'], 'test_setup_code': ''} for i in (11, 12, 601, 602, 603, 604)]


def _stand_in(directory, corpus, vocab_size: int, tie: bool, seed: int):
  config = helpers.tiny_config(vocab_size, model_type='qwen2', qkv_bias=True, tie_embeddings=tie)
  save_hf_checkpoint(directory, config, jax.device_get(init_params(config, jax.random.PRNGKey(seed))))
  helpers.write_chat_tokenizer(directory, corpus, vocab_size=256 + 64)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
  root = tmp_path_factory.mktemp('paper')
  corpus = [r['question'] + ' ' + r['answer'] for r in GSM8K_ROWS] + [r['text'] + ' ' + r['code'] for r in MBPP_ROWS]
  checkpoints = {}
  for pair, (target, draft, _) in paper.PAIRS.items():
    # The heads are padded past the tokenizer's ~320 tokens by different amounts, as in the real pairs.
    _stand_in(str(root / target), corpus, 344, tie=False, seed=1)
    _stand_in(str(root / draft), corpus, 336, tie=True, seed=1)
    checkpoints[pair] = (str(root / target), str(root / draft))
  (root / 'gsm8k').mkdir()
  # The splits are disjoint, as the evaluation demands: training (and validation, held out of it) from other rows.
  train_rows = [{'question': f'Ann has {a} pens and gets {b} more. How many pens does she have?',
                 'answer': f'{a} + {b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b}'}
                for a, b in zip(range(20, 30), range(3, 13))]
  (root / 'gsm8k' / 'train.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in train_rows))
  (root / 'gsm8k' / 'test.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in GSM8K_ROWS))
  (root / 'mbpp.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in MBPP_ROWS))
  return root, checkpoints


def _config(world, pair, task):
  root, checkpoints = world
  config = paper.get_config(f'{pair},{task},smoke')
  section = config if task == 'humaneval' else config.arbiter
  section.pair.target_checkpoint, section.pair.draft_checkpoint = checkpoints[pair]
  section.data.local_dir = str(root / 'gsm8k')
  section.data.path = str(root / 'mbpp.jsonl')
  section.data.shots = 1
  return config, section


@pytest.mark.parametrize('task', sorted(paper.TASKS))
@pytest.mark.parametrize('pair', sorted(paper.PAIRS))
def test_pair_and_task_load_decode_and_score(world, pair, task):
  _, section = _config(world, pair, task)
  target, draft = arbiter.load_pair(section)
  assert target[0].model_type == draft[0].model_type == 'qwen2' and target[0].vocab_size != draft[0].vocab_size
  task_ = arbiter.load_task(section, '')
  problems = task_.problems('test')[:2]
  prompts = [task_.prompt(p) for p in problems]
  if task == 'gsm8k':  # The chat template wraps the few-shot text.
    assert task_.tokenizer.decode(prompts[0]).startswith('system\nYou are helpful.')
  settings = DecodeSettings.for_tokenizer(task_.tokenizer, 16)
  spd = SpeculativeDecoder(target[0], draft[0], Exact(), section.rl.gamma, settings)
  assert spd.shared_vocab_size == task_.tokenizer.vocab_size  # Only the tokenizer's rows are compared.
  got = spd.generate(target[1], draft[1], prompts).completions()
  # Lossless: the target alone with its head cut to the tokenizer's rows picks the same tokens.
  n = task_.tokenizer.vocab_size
  cut = {**target[1], 'embed_tokens': {'embedding': target[1]['embed_tokens']['embedding'][:n]},
         'lm_head': {'kernel': target[1]['lm_head']['kernel'][:, :n]}}
  want = AutoregressiveDecoder(dataclasses.replace(target[0], vocab_size=n), settings=settings).generate(
      cut, prompts).completions()
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)
  correct = task_.score(got, problems)
  assert correct.shape == (2,) and correct.dtype == bool
  # The scorer accepts each problem's own reference solution, and not another problem's.
  field = {'gsm8k': 'solution', 'mbpp': 'code', 'humaneval': 'canonical_solution'}[task]
  reference = [task_.tokenizer.encode(p[field]) for p in problems]
  assert task_.score(reference, problems).all()
  assert not task_.score(reference[::-1], problems).any()


def test_gsm8k_pipeline_on_stand_ins(world, tmp_path):
  root, checkpoints = world
  target, draft = checkpoints['0.5b-7b']
  command = [sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/paper.py:0.5b-7b,gsm8k,smoke',
             f'--config.arbiter.pair.target_checkpoint={target}', f'--config.arbiter.pair.draft_checkpoint={draft}',
             f'--config.arbiter.data.local_dir={root / "gsm8k"}', '--config.arbiter.data.shots=1',
             f'--workdir={tmp_path / "run"}']
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'train draft' not in proc.stdout  # A pretrained pair is not trained.
  results = json.loads((tmp_path / 'run' / 'table' / 'results.json').read_text())
  assert results['task'] == 'gsm8k' and results['problems'] == 4
  rows = {r['method']: r for r in results['rows']}
  assert rows['spd greedy']['correct'] == rows['target-only']['correct']
  assert (tmp_path / 'run' / 'trace' / 'trace.html').exists()
