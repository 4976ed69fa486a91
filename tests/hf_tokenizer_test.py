"""The Hugging Face tokenizer wrapper against transformers on a tokenizer the test trains: the same ids, the same
chat prompt, a text round trip."""

import pytest
import transformers

from cospec_jax.tasks.hf_tokenizer import HFTokenizer, _token_text
from tests import helpers

MESSAGES = [{'role': 'user', 'content': 'Natalia sold 48 clips in April. How many in May?'},
            {'role': 'assistant', 'content': 'She sold 48/2 = 24 clips.\n#### 24'},
            {'role': 'user', 'content': 'And in June, with 3 more?'}]


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  path = tmp_path_factory.mktemp('tok')
  corpus = ['Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.',
            'How many clips did Natalia sell altogether in April and May? #### 72', 'Weng earns $12 an hour.']
  helpers.write_chat_tokenizer(str(path), corpus)
  return str(path)


def test_ids_and_chat_prompt_match_transformers(directory):
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  ours = HFTokenizer(directory)
  text = 'Natalia sold 48 clips in April, and 24 in May. #### 72 ünïcode'
  assert ours.encode(text) == reference.encode(text, add_special_tokens=False)
  for add in (True, False):
    expected = reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=add)
    assert ours.apply_chat_template(MESSAGES, add_generation_prompt=add) == expected
  assert ours.apply_chat_template(MESSAGES).endswith('<|im_start|>assistant\n')
  assert ours.eos_id == reference.convert_tokens_to_ids('<|im_end|>')
  assert ours.pad_id == reference.pad_token_id and ours.bos_id is None
  assert ours.vocab_size == len(reference)


def test_round_trip_stops_at_eos(directory):
  tok = HFTokenizer(directory)
  text = 'Weng earns $12 an hour. ünïcode survives'
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  assert tok.decode(ids + [tok.eos_id] + tok.encode(' ignored')) == text
  prompt_ids = tok.encode(tok.apply_chat_template(MESSAGES[:1]))
  assert tok.encode('<|im_start|>')[0] in prompt_ids  # Special tokens in a prompt are single ids.


def test_special_tokens_as_objects(directory):
  """Older tokenizer_config.json files write special tokens as {'content': ...}."""
  assert _token_text({'content': '<|im_end|>', 'lstrip': False}) == '<|im_end|>' == _token_text('<|im_end|>')


def test_errors_name_the_fix(directory, tmp_path):
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    HFTokenizer(str(tmp_path))
  tok = HFTokenizer(directory)
  with pytest.raises(Exception, match='bad role'):
    tok.apply_chat_template([{'role': 'robot', 'content': 'hi'}])
  tok.chat_template = None
  with pytest.raises(ValueError, match='chat_template'):
    tok.apply_chat_template(MESSAGES)
