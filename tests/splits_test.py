"""Disjoint splits of the embedded task: no training problem in validation or test, at the pipeline's sizes."""

import itertools
import os

import pytest

from cospec_jax import config_args, selection
from cospec_jax.tasks import arithmetic

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def _pipeline_data():
  """The data section of the pipeline's full run (configs/train_target.py, which every stage shares)."""
  return config_args.load(os.path.join(CONFIGS, 'pipeline.py'), 'pipeline').target.data


def _splits(data):
  """Each split as the TFDS builder writes it: the arithmetic problems, then the transfer family's."""
  difficulty = arithmetic.Difficulty(**data.difficulty.to_dict())
  wording = arithmetic.Wording(**data.wording.to_dict())
  n_transfer = round(data.train_size * data.transfer.train_share)
  sizes = {'train': {'arithmetic': data.train_size - n_transfer, data.transfer.family: n_transfer},
           'validation': {'arithmetic': data.validation_size, data.transfer.family: data.transfer.eval_size},
           'test': {'arithmetic': data.test_size, data.transfer.family: data.transfer.eval_size}}
  return {s: [p for family, n in counts.items()
              for p in arithmetic.iter_problems(data.seed, s, n, difficulty, wording, family)]
          for s, counts in sizes.items()}


def test_no_overlap_at_the_pipelines_sizes():
  data = _pipeline_data()
  splits = _splits(data)
  assert [len(splits[s]) for s in ('train', 'validation', 'test')] == [50_000, 700, 700]
  assert {p['family'] for p in splits['test']} == {'arithmetic', 'units'}
  for a, b in itertools.combinations(splits, 2):
    # By the question text, and by the content read back from it independently of the stored key.
    assert not {p['question'] for p in splits[a]} & {p['question'] for p in splits[b]}, (a, b)
    keys = lambda s: {arithmetic.key_of_question(p['question']) for p in splits[s]}  # noqa: E731
    assert not keys(a) & keys(b), (a, b)
  for s in arithmetic.UNIQUE_SPLITS:
    assert len({p['question'] for p in splits[s]}) == len(splits[s]), s


def test_the_partition_holds_across_seeds():
  """Another seed's training problems never land in this seed's test split: the split is a function of content."""
  difficulty = arithmetic.Difficulty(min_steps=2, max_steps=2, max_start=5, max_operand=5, max_multiplier=3)
  test = {p['key'] for p in arithmetic.iter_problems(0, 'test', 20, difficulty)}
  for seed in (1, 2, 3):
    assert not test & {p['key'] for p in arithmetic.iter_problems(seed, 'train', 2_000, difficulty)}


@pytest.mark.parametrize('question', arithmetic.QUESTION_STYLES)
@pytest.mark.parametrize('family', arithmetic.FAMILIES)
def test_key_matches_the_question(family, question):
  wording = arithmetic.Wording(**dict(_pipeline_data().wording.to_dict(), question=question))
  for p in arithmetic.iter_problems(0, 'train', 200, wording=wording, family=family):
    assert arithmetic.is_question(p['question']) and arithmetic.key_of_question(p['question']) == p['key']
    assert arithmetic.split_of_key(p['key']) == 'train'
  assert arithmetic.make_problem(0, 'test', 7, family=family) == list(
      arithmetic.iter_problems(0, 'test', 8, family=family))[7]


def test_too_small_a_space_is_named():
  tiny = arithmetic.Difficulty(min_steps=1, max_steps=1, max_start=2, max_operand=2, max_multiplier=2,
                               operations='+')
  with pytest.raises(ValueError, match='too few distinct problems'):
    list(arithmetic.iter_problems(0, 'test', 50, tiny))


def test_other_tasks_questions_are_read_as_text():
  """A question of another task that opens like one of this task's (GSM8K has 'From March to August, ...') is
  compared as text, not parsed as an arithmetic problem."""
  for text in ('From March to August, Sam made $460 doing 23 hours of yard work.', 'Start with the apples.',
               'Convert 3 cups to ounces, then add 2.'):
    assert not arithmetic.is_question(text)
    assert selection.problem_texts({'question': text}) == (text, ' '.join(text.split()).casefold())
