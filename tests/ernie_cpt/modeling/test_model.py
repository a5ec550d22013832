import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizer

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import ArchitectureOptions
from ernie_cpt.modeling.architectures.hard import HardSharing
from ernie_cpt.modeling.encoder import ModelOptions, encoder_config, encoder_from_checkpoint
from ernie_cpt.modeling.heads import MaskedLMHead, SentencePairHead
from pretasks import IGNORE_INDEX, TASKS

NUM_TASK_IDS = len(TASKS)


def _model(vocab_size=50):
    options = ModelOptions(model_size="tiny", num_layers=1, dropout=0.0, attention_dropout=0.0)
    config = encoder_config(options, vocab_size, 64, NUM_TASK_IDS)
    from transformers import ErnieModel

    torch.manual_seed(0)
    encoder = ErnieModel(config)
    head = MaskedLMHead(config, vocab_size, encoder.get_input_embeddings())
    model = HardSharing(encoder, {"a": 0, "b": 3}, ArchitectureOptions())
    model.add_head("a", head)
    model.add_head("b", head)
    return model


def _batch(labels):
    input_ids = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 0]])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
            "token_type_ids": torch.zeros_like(input_ids), "labels": torch.tensor(labels)}


def test_presets_and_overrides_give_the_ernie_2_config():
    config = encoder_config(ModelOptions(model_size="base"), 30000, 512, NUM_TASK_IDS)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size) == (12, 768, 12, 3072)
    assert config.use_task_id and config.task_type_vocab_size == NUM_TASK_IDS
    small = encoder_config(ModelOptions(model_size="mini", num_layers=2, hidden_size=64, num_heads=2), 100, 128,
                           NUM_TASK_IDS)
    assert (small.num_hidden_layers, small.hidden_size, small.num_attention_heads) == (2, 64, 2)
    with pytest.raises(UserError, match="multiple"):
        encoder_config(ModelOptions(hidden_size=100, num_heads=3), 100, 128, NUM_TASK_IDS)


def test_mlm_logits_only_at_targets_with_tied_weights():
    model = _model()
    labels = [[IGNORE_INDEX, 10, IGNORE_INDEX, 12, IGNORE_INDEX], [IGNORE_INDEX] * 2 + [14, IGNORE_INDEX, IGNORE_INDEX]]
    out = model("a", _batch(labels))
    assert out.logits.shape == (3, 50)  # three targets, never every position
    assert out.labels.tolist() == [10, 12, 14]
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(out.logits, out.labels))
    # The projection is the word embedding matrix itself, and it is not stored twice.
    assert not any("word_embeddings" in k for k in model.heads["a"].state_dict())
    with torch.no_grad():
        model.encoder.get_input_embeddings().weight[10] += 1.0
    assert not torch.allclose(model("a", _batch(labels)).logits[:, 10], out.logits[:, 10])


def test_each_task_uses_its_own_task_embedding():
    model = _model().eval()
    labels = [[IGNORE_INDEX, 10, 11, 12, IGNORE_INDEX], [IGNORE_INDEX, 13, 14, IGNORE_INDEX, IGNORE_INDEX]]
    a, b = model("a", _batch(labels)), model("b", _batch(labels))
    assert not torch.allclose(a.logits, b.logits)
    with torch.no_grad():  # same rows of the task embedding -> same outputs
        emb = model.encoder.embeddings.task_type_embeddings.weight
        emb[3] = emb[0]
    assert torch.allclose(model("b", _batch(labels)).logits, a.logits)


@pytest.fixture
def bert_dir(tmp_path):
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(1)
    model = BertForMaskedLM(config)
    model.save_pretrained(tmp_path)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(35)]]
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}).save_pretrained(tmp_path)
    return tmp_path, model


def test_init_from_bert_maps_encoder_and_mlm_weights(bert_dir):
    path, bert = bert_dir
    encoder, mlm = encoder_from_checkpoint(path, NUM_TASK_IDS)
    assert encoder.config.use_task_id and encoder.config.hidden_size == 32
    source = bert.state_dict()
    for key, value in encoder.state_dict().items():
        if "task_type_embeddings" in key or key.startswith("pooler."):
            continue
        assert torch.equal(value, source["bert." + key]), key
    assert torch.equal(mlm["transform.dense.weight"], source["cls.predictions.transform.dense.weight"])


def test_init_from_refuses_pickled_weights(bert_dir):
    path, bert = bert_dir
    (path / "model.safetensors").unlink()
    torch.save(bert.state_dict(), path / "pytorch_model.bin")
    with pytest.raises(UserError, match="safetensors"):
        encoder_from_checkpoint(path, NUM_TASK_IDS)


def test_sentence_pair_head_compares_the_mean_states_of_the_two_segments():
    config = encoder_config(ModelOptions(model_size="tiny", dropout=0.0, attention_dropout=0.0), 50, 64, NUM_TASK_IDS)
    head = SentencePairHead(config, 3).eval()
    hidden = config.hidden_size
    # [CLS] a a [SEP] b [SEP] [PAD]: token types 0 0 0 0 1 1 0, the last position padding.
    states = torch.arange(7 * hidden, dtype=torch.float).reshape(1, 7, hidden)
    batch = {"token_type_ids": torch.tensor([[0, 0, 0, 0, 1, 1, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0]]), "labels": torch.tensor([2])}
    pooled = torch.full((1, hidden), -1.0)
    u, v = states[0, 1:4].mean(0), states[0, 4:6].mean(0)  # [CLS] and padding left out
    expected = torch.cat([pooled[0], u, v, (u - v).abs(), u * v])
    logits, labels = head(states, pooled, batch)
    assert labels.tolist() == [2]
    assert torch.allclose(logits[0], head.classifier(expected))


def test_dropout_and_attention_dropout_set_their_own_config_fields():
    config = encoder_config(ModelOptions(model_size="tiny", dropout=0.25, attention_dropout=0.05), 50, 64, NUM_TASK_IDS)
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.25, 0.05)
    default = encoder_config(ModelOptions(model_size="tiny"), 50, 64, NUM_TASK_IDS)
    assert (default.hidden_dropout_prob, default.attention_probs_dropout_prob) == (0.1, 0.1)  # BERT's, as before


def test_attention_dropout_is_a_flag_with_its_range(capsys):
    from ernie_cpt.cli import main

    assert main(["pretrain", "--output-dir", "unused", "--attention-dropout", "1"]) == 2
    assert "--attention-dropout" in capsys.readouterr().err


def test_predictions_are_the_first_of_equal_maxima_as_argmax_gives():
    """``Head.predictions`` uses ``max`` (faster on CPU) but must answer what ``argmax`` answers:
    the first index of a tie, a NaN counted as the maximum, and at least one -inf row."""
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [float("nan"), 1.0, float("nan"), 2.0], [2.0, 2.0, 2.0, 2.0],
                           [-float("inf")] * 4, [1.0, float("inf"), float("inf"), 0.0]])
    head = MaskedLMHead(encoder_config(ModelOptions(model_size="tiny"), 10, 128, 1), 10, torch.nn.Embedding(10, 128))
    assert head.predictions(logits).tolist() == [1, 0, 0, 0, 1]
    ties = torch.randint(0, 3, (300, 2000), generator=torch.Generator().manual_seed(0)).float()
    assert torch.equal(head.predictions(ties), ties.argmax(-1))
    assert head.correct(head.predictions(ties), ties.argmax(-1)) == 300
