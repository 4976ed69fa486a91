"""Agreement with Hugging Face transformers (torch, CPU), the reference implementation.

Tiny random LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM written with `save_pretrained` are imported and
must give HF's logits; greedy generation must equal `generate(do_sample=False)`; greedy speculative decoding must
equal HF assisted generation; and our export must load in HF with the same logits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder  # noqa: E402
from cospec_jax.models import (RopeScaling, apply, init_params, load_hf_checkpoint,  # noqa: E402
                               save_hf_checkpoint)
from cospec_jax import sharding  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402
from tests import helpers  # noqa: E402

V = 97
EOS = 2
_COMMON = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, initializer_range=0.2, eos_token_id=EOS, bos_token_id=1, pad_token_id=0)
HF_MODELS = {
    'llama3': lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **_COMMON, rope_theta=500.0, rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                                                   'high_freq_factor': 4.0, 'original_max_position_embeddings': 16})),
    'qwen2_tied': lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**_COMMON, tie_word_embeddings=True)),
    'qwen3': lambda: transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**_COMMON, head_dim=16)),
}


def _hf_logits(model, tokens: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor(tokens)).logits.float().numpy()


def _positions(tokens):
  return jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)


@pytest.fixture(scope='module', params=sorted(HF_MODELS))
def hf_checkpoint(request, tmp_path_factory):
  torch.manual_seed(0)
  model = HF_MODELS[request.param]().eval()
  path = tmp_path_factory.mktemp(request.param)
  model.save_pretrained(path)
  return model, str(path)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_import_gives_hf_logits(hf_checkpoint, scan_layers):
  model, path = hf_checkpoint
  config, params = load_hf_checkpoint(path, scan_layers=scan_layers)
  tokens = np.random.RandomState(0).randint(0, V, (2, 19))
  ours, _, _ = apply(config, params, jnp.asarray(tokens), _positions(tokens))
  np.testing.assert_allclose(np.asarray(ours), _hf_logits(model, tokens), atol=1e-4, rtol=0)


def test_import_onto_a_mesh_in_bfloat16_gives_hf_logits(hf_checkpoint):
  """Streaming into shards: every device's slice read from the file, scanned layers, bfloat16 weights."""
  cpus = jax.devices('cpu')  # The 8 simulated CPU devices of tests/conftest.py, whatever the default backend.
  assert len(cpus) >= 8, 'tests/conftest.py sets 8 CPU devices'
  model, path = hf_checkpoint
  mesh = sharding.make_mesh(2, 4, devices=cpus[:8])
  config, params = load_hf_checkpoint(path, 'bfloat16', scan_layers=True, mesh=mesh)
  q = params['layers']['self_attn']['q_proj']['kernel']
  assert q.dtype == jnp.bfloat16 and q.sharding.spec == PartitionSpec(None, None, 'model')
  host_config, host_params = load_hf_checkpoint(path, 'bfloat16', scan_layers=True)
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(params), host_params)
  tokens = np.random.RandomState(0).randint(0, V, (2, 19))
  ours, _, _ = jax.jit(lambda p, t: apply(config, p, t, _positions(t)))(params, jnp.asarray(tokens))
  ref = _hf_logits(model, tokens)
  assert np.abs(np.asarray(ours) - ref).max() < 0.1 * np.abs(ref).max()  # bfloat16 weights and activations.


@pytest.mark.parametrize('scan_layers', [False, True])
def test_greedy_generation_equals_hf_generate(hf_checkpoint, scan_layers):
  model, path = hf_checkpoint
  config, params = load_hf_checkpoint(path, scan_layers=scan_layers)
  decoder = AutoregressiveDecoder(config, settings=DecodeSettings(max_new_tokens=20, eos_ids=(EOS,)))
  prompts = helpers.ragged_prompts(3, V, seed=1, low=2, high=9)
  ours = decoder.generate(params, prompts).completions()
  for prompt, got in zip(prompts, ours):
    with torch.no_grad():
      ref = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, eos_token_id=EOS,
                           pad_token_id=0)[0, len(prompt):].numpy()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_export_loads_in_hf_with_same_logits(hf_checkpoint, tmp_path, scan_layers):
  _, path = hf_checkpoint
  config, params = load_hf_checkpoint(path, scan_layers=scan_layers)
  out = save_hf_checkpoint(str(tmp_path / 'exported'), config, params, eos_token_id=EOS)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  tokens = np.random.RandomState(2).randint(0, V, (2, 11))
  ours, _, _ = apply(config, params, jnp.asarray(tokens), _positions(tokens))
  np.testing.assert_allclose(_hf_logits(reloaded, tokens), np.asarray(ours), atol=1e-4, rtol=0)
  config2, params2 = load_hf_checkpoint(out, scan_layers=scan_layers)
  assert config2 == config
  jax.tree_util.tree_map(np.testing.assert_array_equal, params2, params)


@pytest.mark.parametrize('overrides', [
    dict(),
    dict(model_type='qwen2', qkv_bias=True, tie_embeddings=True),
    dict(model_type='qwen3', qk_norm=True, head_dim=16),
    dict(rope_theta=500.0, rope_scaling=RopeScaling('llama3', 8.0, 1.0, 4.0, 16)),
])
def test_models_trained_here_run_in_hf(overrides, tmp_path):
  """Our own random init, exported (sharded, to exercise the index), gives the same logits in HF."""
  config = helpers.tiny_config(V, **overrides)
  params = init_params(config, jax.random.PRNGKey(5))
  out = save_hf_checkpoint(str(tmp_path / 'ckpt'), config, params, max_shard_bytes=20_000)
  assert (tmp_path / 'ckpt' / 'model.safetensors.index.json').exists()
  hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  tokens = np.random.RandomState(3).randint(0, V, (1, 13))
  ours, _, _ = apply(config, params, jnp.asarray(tokens), _positions(tokens))
  np.testing.assert_allclose(_hf_logits(hf, tokens), np.asarray(ours), atol=1e-4, rtol=0)


def test_greedy_speculative_equals_hf_assisted_generation(tmp_path):
  """Two drafts for one target: a noisy copy (accepted often, so the commit path is exercised) and a smaller
  random Llama (rejected almost always)."""
  torch.manual_seed(0)
  target = HF_MODELS['llama3']().eval()
  drafts = {'noisy_copy': HF_MODELS['llama3']().eval()}
  drafts['noisy_copy'].load_state_dict({k: v + 0.03 * torch.randn_like(v) for k, v in target.state_dict().items()})
  small = dict(_COMMON, hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1)
  drafts['small'] = transformers.LlamaForCausalLM(transformers.LlamaConfig(**small)).eval()
  target.save_pretrained(tmp_path / 'target')
  tc, tp = load_hf_checkpoint(str(tmp_path / 'target'))
  prompts = helpers.ragged_prompts(3, V, seed=4, low=2, high=9)
  for name, draft in drafts.items():
    draft.save_pretrained(tmp_path / name)
    dc, dp = load_hf_checkpoint(str(tmp_path / name))
    decoder = SpeculativeDecoder(tc, dc, Exact(), 4, DecodeSettings(max_new_tokens=24, eos_ids=(EOS,)))
    gen = decoder.generate(tp, dp, prompts)
    for prompt, got in zip(prompts, gen.completions()):
      with torch.no_grad():
        ref = target.generate(torch.tensor([prompt]), assistant_model=draft, do_sample=False, max_new_tokens=24,
                              eos_token_id=EOS, pad_token_id=0)[0, len(prompt):].numpy()
      np.testing.assert_array_equal(got, ref, err_msg=name)
    if name == 'noisy_copy':
      st = jax.device_get(gen.stats)
      assert 0 < st.accepted_B.sum() < st.proposed_B.sum()
