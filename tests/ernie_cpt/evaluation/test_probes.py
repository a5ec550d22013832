"""Linear probes on frozen features, on tasks made from real spaCy annotations (four chapters of the
bundled sample): what the tasks hold, that their training and test parts do not share an entity or a
passage, and that a probe scores an encoder saved with save_pretrained."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import ErnieConfig, ErnieModel

from ernie_cpt.evaluation.probes import MAX_EXAMPLES, frozen_encoder, probe_scores, probe_sets


@pytest.fixture(scope="module")
def probes(sample_annotations):
    return {probe.name: probe for probe in probe_sets(sample_annotations)}


def test_entity_type_probe_holds_spacy_entities_in_their_sentences(probes, sample_annotations):
    probe = probes["entity_type"]
    texts = {ent for doc in sample_annotations for ent in
             (doc["text"][s:e] for s, e in zip(doc["entity_starts"], doc["entity_ends"]))}
    for text, (start, end), label in zip(probe.texts, probe.spans, probe.labels):
        assert text[start:end] in texts and label.isupper()
    assert "PERSON" in probe.labels and len(set(probe.labels)) >= 2 and len(probe.texts) <= MAX_EXAMPLES
    # split by the entity's text: no name is in both parts
    names = [(text[s:e].lower(), train) for text, (s, e), train in zip(probe.texts, probe.spans, probe.train)]
    assert not {n for n, t in names if t} & {n for n, t in names if not t}
    assert 0.5 < sum(probe.train) / len(probe.train) < 0.9


def test_adjacency_probe_pairs_next_sentences_against_distant_ones(probes, sample_annotations):
    probe = probes["sentence_adjacency"]
    sentences = [[doc["text"][s:e] for s, e in zip(doc["sentence_starts"], doc["sentence_ends"])]
                 for doc in sample_annotations]
    following = {pair for doc in sentences for pair in itertools.pairwise(doc)}
    for first, second, label in zip(probe.texts, probe.pairs, probe.labels):
        assert ((first, second) in following) == (label == "adjacent")
    assert 0.4 < probe.labels.count("adjacent") / len(probe.labels) < 0.6
    assert any(probe.train) and not all(probe.train)


@pytest.mark.slow
def test_probe_scores_an_exported_encoder(probes, sample_tokenizer, tmp_path):
    torch.manual_seed(0)
    encoder = ErnieModel(ErnieConfig(vocab_size=len(sample_tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, use_task_id=True,
                                     task_type_vocab_size=8))
    encoder.save_pretrained(str(tmp_path))
    sample_tokenizer.save_pretrained(str(tmp_path))

    scores = probe_scores(tmp_path, list(probes.values()))

    for name, probe in probes.items():
        assert scores[name]["train_examples"] == sum(probe.train)
        assert scores[name]["test_examples"] == len(probe.train) - sum(probe.train)
        assert 0.0 <= scores[name]["accuracy"] <= 1.0 and 0.0 < scores[name]["majority_accuracy"] <= 1.0
    assert scores == probe_scores(tmp_path, list(probes.values()))  # deterministic


def test_a_routed_model_is_probed_through_its_first_tasks_route(tmp_path):
    """frozen_encoder of ernie-cpt's own folder (CGC) gives the architecture's token states for its first
    task, which differ from the second task's; of a Hugging Face folder, the ErnieModel's."""
    from ernie_cpt.modeling.heads import MaskedLMHead
    from ernie_cpt.modeling.saved_model import save_model_folder
    from tests.ernie_cpt.modeling.test_architectures import BATCH, build

    model = build("cgc", expert_layers=1, shared_experts=1, task_experts=1)
    for task in model.task_ids:
        model.add_head(task, MaskedLMHead(model.config, model.config.vocab_size, model.word_embeddings()))
    (tmp_path / "cgc").mkdir()
    save_model_folder(model, tmp_path / "cgc", {})
    states = frozen_encoder(tmp_path / "cgc")(BATCH)
    assert states.shape == (2, 6, model.config.hidden_size)
    torch.testing.assert_close(states, model.encode("a", BATCH)[0])
    assert not torch.allclose(states, model.encode("b", BATCH)[0])
    hard = build("hard")
    hard.encoder.save_pretrained(str(tmp_path / "hard"))
    torch.testing.assert_close(frozen_encoder(tmp_path / "hard")(BATCH), hard.encoder(**BATCH).last_hidden_state)
