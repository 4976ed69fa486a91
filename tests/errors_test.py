"""Bad input gets a clear error naming the problem, and nothing is left half-written."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.models import CheckpointError, apply, init_params, load_hf_checkpoint, save_hf_checkpoint
from cospec_jax.models.hf_checkpoint import config_from_hf
from tests import helpers


@pytest.fixture
def checkpoint(tmp_path):
  config = helpers.tiny_config()
  params = init_params(config, jax.random.PRNGKey(0))
  return config, params, save_hf_checkpoint(str(tmp_path / 'ckpt'), config, params)


def test_missing_directory(tmp_path):
  with pytest.raises(CheckpointError, match='does not exist'):
    load_hf_checkpoint(str(tmp_path / 'nope'))


def test_missing_weights(checkpoint):
  _, _, path = checkpoint
  os.remove(os.path.join(path, 'model.safetensors'))
  with pytest.raises(CheckpointError, match='expected model.safetensors'):
    load_hf_checkpoint(path)


def test_missing_config(checkpoint):
  _, _, path = checkpoint
  os.remove(os.path.join(path, 'config.json'))
  with pytest.raises(CheckpointError, match='config.json'):
    load_hf_checkpoint(path)


def test_truncated_weights(checkpoint):
  _, _, path = checkpoint
  weights = os.path.join(path, 'model.safetensors')
  with open(weights, 'rb') as f:
    data = f.read()
  with open(weights, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(CheckpointError, match='corrupt or truncated'):
    load_hf_checkpoint(path)


def test_missing_shard(tmp_path):
  config = helpers.tiny_config()
  path = save_hf_checkpoint(str(tmp_path / 'c'), config, init_params(config, jax.random.PRNGKey(0)),
                            max_shard_bytes=20_000)
  shard = sorted(f for f in os.listdir(path) if f.startswith('model-'))[-1]
  os.remove(os.path.join(path, shard))
  with pytest.raises(CheckpointError, match=shard):
    load_hf_checkpoint(path)


def test_wrong_shapes_are_named(checkpoint):
  _, _, path = checkpoint
  cfg_path = os.path.join(path, 'config.json')
  with open(cfg_path) as f:
    hf = json.load(f)
  hf['intermediate_size'] = 128
  with open(cfg_path, 'w') as f:
    json.dump(hf, f)
  with pytest.raises(CheckpointError, match=r'mlp\.\w+_proj\.weight has shape .* but config.json implies'):
    load_hf_checkpoint(path)


@pytest.mark.parametrize('hf, match', [
    (dict(model_type='gpt2'), "model_type='gpt2' is not supported"),
    (dict(model_type='llama', hidden_act='gelu'), 'hidden_act'),
    (dict(model_type='qwen2', use_sliding_window=True), 'sliding-window'),
    (dict(model_type='llama', rope_scaling={'rope_type': 'yarn', 'factor': 4.0}), "rope_type='yarn'"),
])
def test_unsupported_architecture(hf, match):
  base = dict(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
  with pytest.raises(CheckpointError, match=match):
    config_from_hf({**base, **hf})


def test_export_never_clobbers_or_leaves_partial_output(checkpoint, tmp_path):
  config, params, path = checkpoint
  before = sorted(os.listdir(path))
  with pytest.raises(FileExistsError, match='overwrite=True'):
    save_hf_checkpoint(path, config, params)
  bad_params = dict(params)
  del bad_params['norm']
  with pytest.raises(ValueError, match='missing'):
    save_hf_checkpoint(path, config, bad_params, overwrite=True)
  assert sorted(os.listdir(path)) == before
  assert load_hf_checkpoint(path)[0] == config  # The old checkpoint is intact.
  assert sorted(os.listdir(tmp_path)) == ['ckpt']  # No temporary directories left behind.


def test_prompt_longer_than_cache():
  config = helpers.tiny_config()
  params = init_params(config, jax.random.PRNGKey(0))
  decoder = AutoregressiveDecoder(config, settings=DecodeSettings(max_new_tokens=8, max_len=32))
  with pytest.raises(ValueError, match='max_len=32'):
    decoder.generate(params, [[5] * 30])
  spd = SpeculativeDecoder(config, config, Exact(), 4, DecodeSettings(max_new_tokens=8, max_len=32))
  with pytest.raises(ValueError, match='max_len=32'):
    spd.generate(params, params, [[5] * 20])


def test_prompt_outside_vocabulary():
  config = helpers.tiny_config()
  params = init_params(config, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match='token 61 at position 2'):
    AutoregressiveDecoder(config).generate(params, [[1, 2, 61]])


@pytest.mark.parametrize('gamma', [0, -1])
def test_gamma_below_one(gamma):
  config = helpers.tiny_config()
  with pytest.raises(ValueError, match=f'gamma={gamma}'):
    SpeculativeDecoder(config, config, Exact(), gamma)


@pytest.mark.parametrize('field', ['max_new_tokens', 'prefill_chunk', 'refills_per_step', 'prefill_ahead'])
def test_bad_decode_settings_are_named(field):
  with pytest.raises(ValueError, match=f'{field}=-1'):
    DecodeSettings(**{field: -1})


def test_mismatched_vocabularies():
  target, draft = helpers.tiny_config(64), helpers.tiny_config(60)
  with pytest.raises(ValueError, match=r'Draft vocabulary \(60\) differs from the target\'s \(64\)'):
    SpeculativeDecoder(target, draft)
  with pytest.raises(ValueError, match='vocab_size=64 exceeds'):
    SpeculativeDecoder(target, draft, vocab_size=64)


def test_shared_vocab_of_padded_heads_is_lossless():
  """Heads padded past the tokenizer (Qwen2.5 0.5B vs 7B) decode over the shared rows: the result is the
  target's greedy choice among those rows, computed here by plain full forward passes."""
  target, draft = helpers.tiny_config(64), helpers.tiny_config(60)
  tp, dp = init_params(target, jax.random.PRNGKey(0)), init_params(draft, jax.random.PRNGKey(1))
  prompts = helpers.ragged_prompts(2, 60, seed=9)
  got = SpeculativeDecoder(target, draft, Exact(), 3, DecodeSettings(max_new_tokens=12),
                           vocab_size=60).generate(tp, dp, prompts).completions()
  length = max(len(p) for p in prompts) + 12
  # One compiled shape: a causal forward over a zero-padded buffer, read at the last real position.
  forward = jax.jit(lambda t: apply(target, tp, t, jnp.arange(length)[None, :])[0])
  for prompt, g in zip(prompts, got):
    seq = list(prompt)
    for _ in range(12):
      logits = forward(jnp.asarray([seq + [0] * (length - len(seq))]))
      seq.append(int(jnp.argmax(logits[0, len(seq) - 1, :60])))
    np.testing.assert_array_equal(g, seq[len(prompt):])


@pytest.mark.parametrize('prompts, match', [([], 'No prompts'), ([[1], []], 'Prompt 1 is empty')])
def test_bad_prompt_lists(prompts, match):
  config = helpers.tiny_config()
  with pytest.raises(ValueError, match=match):
    AutoregressiveDecoder(config).generate(init_params(config, jax.random.PRNGKey(0)), prompts)
