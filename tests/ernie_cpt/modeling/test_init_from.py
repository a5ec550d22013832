"""An --init-from folder whose tokenizer and config disagree with each other or with the run: a
larger tokenizer (added tokens) resizes the embeddings with a warning (resize_token_embeddings);
too few positions for --max-seq-length, too few token types for the tasks' segments, or a cased
tokenizer for capitalization is a one-line error naming both sizes, before any work."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from ernie_cpt.cli import main
from ernie_cpt.modeling.encoder import encoder_from_checkpoint
from pretasks import TASKS
from tests.helpers import expect_error

NO_PIPELINE = "no_such_pipeline_xyz"  # no case below may get as far as annotating


def make_bert(folder: Path, tokenizer, vocab_size: int, positions: int = 128, token_types: int = 2) -> Path:
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=positions, type_vocab_size=token_types)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def added_tokens(sample_tokenizer, tmp_path) -> tuple[Path, int]:
    """A BERT whose tokenizer has 2 added tokens its embedding matrix lacks."""
    tokenizer = BertTokenizerFast.from_pretrained(make_bert(tmp_path / "t", sample_tokenizer, len(sample_tokenizer)))
    rows = len(tokenizer)
    tokenizer.add_tokens(["<persuasion>", "<emma>"])
    return make_bert(tmp_path / "bert", tokenizer, rows), rows


def test_a_larger_tokenizer_resizes_the_embeddings_and_the_mlm_bias(added_tokens, caplog):
    folder, rows = added_tokens
    with caplog.at_level(logging.WARNING):
        encoder, mlm = encoder_from_checkpoint(folder, len(TASKS), vocab_size=rows + 2)

    source = BertForMaskedLM.from_pretrained(folder).state_dict()
    embeddings = encoder.get_input_embeddings().weight
    assert embeddings.shape[0] == rows + 2 and encoder.config.vocab_size == rows + 2
    assert torch.equal(embeddings[:rows], source["bert.embeddings.word_embeddings.weight"])
    assert mlm["bias"].shape == (rows + 2,) and torch.equal(mlm["bias"][:rows], source["cls.predictions.bias"])
    assert f"has {rows + 2} tokens but its embedding matrix {rows} rows (added tokens); the embeddings are " \
           f"resized to {rows + 2} with resize_token_embeddings" in caplog.text


@pytest.mark.slow
def test_pretrain_from_a_checkpoint_with_added_tokens(added_tokens, sample_dir, tmp_path, caplog):
    folder, rows = added_tokens
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", "--corpus", str(sorted(sample_dir.glob("*.txt"))[0]), "--output-dir", str(run_dir),
                     "--init-from", str(folder), "--max-steps", "2", "--batch-size", "4", "--eval-fraction", "0",
                     "--max-seq-length", "64"]) == 0
    assert json.loads((run_dir / "encoder_config.json").read_text())["vocab_size"] == rows + 2
    assert "resize_token_embeddings" in caplog.text




def pretrain(tmp_path: Path, folder: Path, *flags: str) -> list[str]:
    return ["pretrain", "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--spacy-model", NO_PIPELINE, "--init-from", str(folder), *flags]


def test_fewer_positions_than_max_seq_length(sample_tokenizer, tmp_path, capsys):
    folder = make_bert(tmp_path / "bert", sample_tokenizer, len(sample_tokenizer), positions=64)
    expect_error(pretrain(tmp_path, folder, "--max-seq-length", "128"), capsys, tmp_path,
                 f"--max-seq-length 128 exceeds the 64 positions of --init-from {folder}; lower --max-seq-length "
                 f"to 64 or less")


def test_one_token_type_for_a_pair_task(sample_tokenizer, tmp_path, capsys):
    folder = make_bert(tmp_path / "bert", sample_tokenizer, len(sample_tokenizer), token_types=1)
    expect_error(pretrain(tmp_path, folder, "--tasks", "knowledge_masking", "sentence_distance"), capsys, tmp_path,
                 f"the tasks put 2 segments in an input (token type ids 0 to 1), but --init-from {folder} has a "
                 f"token type vocabulary of 1")


def test_one_token_type_is_enough_for_single_segment_tasks(sample_tokenizer, tmp_path, capsys):
    folder = make_bert(tmp_path / "bert", sample_tokenizer, len(sample_tokenizer), token_types=1)
    expect_error(pretrain(tmp_path, folder, "--tasks", "knowledge_masking", "capitalization"), capsys, tmp_path,
                 f"spaCy pipeline '{NO_PIPELINE}' is not installed")  # past every --init-from check


def test_a_cased_tokenizer_for_capitalization(sample_tokenizer, tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(sample_tokenizer.convert_ids_to_tokens(list(range(len(sample_tokenizer))))))
    cased = BertTokenizerFast(vocab=str(vocab), do_lower_case=False)
    folder = make_bert(tmp_path / "bert", cased, len(cased))
    expect_error(pretrain(tmp_path, folder, "--tasks", "knowledge_masking", "capitalization"), capsys, tmp_path,
                 "capitalization needs an uncased (lower-casing) tokenizer")
