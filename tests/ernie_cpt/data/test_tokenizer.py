import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError


def test_trained_tokenizer_round_trips_through_auto_tokenizer(sample_tokenizer, sample_annotations, tmp_path):
    assert len(sample_tokenizer) == 2000
    sample_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.is_fast and loaded.do_lower_case
    text = sample_annotations["text"][1][:2000]
    ids = loaded(text)["input_ids"]
    assert ids == sample_tokenizer(text)["input_ids"]
    assert ids[0] == loaded.cls_token_id and ids[-1] == loaded.sep_token_id
    # Uncased WordPiece: decoding gives the lower-cased words back (spacing of punctuation aside).
    decoded = loaded.decode(ids, skip_special_tokens=True)
    assert decoded.split()[:5] == text.lower().split()[:5]
    assert loaded.unk_token_id not in ids[:200]
    assert load_tokenizer(tmp_path).mask_token == "[MASK]"


def test_default_vocabulary_grows_with_the_corpus():
    import datasets

    from ernie_cpt.data.tokenizer import corpus_vocab_size

    def corpus(words: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"text": ["word " * words]})

    assert corpus_vocab_size(corpus(40_000)) == 3968  # 20 * 200 = 4000 = 62.5 x 64 -> 62 x 64
    assert corpus_vocab_size(corpus(720_000)) == 16960  # 20 * 848.5 = 16971 -> 16960
    assert corpus_vocab_size(corpus(100)) == 2048
    assert corpus_vocab_size(corpus(10_000_000)) == 30522


def test_no_printable_ascii_character_ever_becomes_unk():
    """Trained on text without a digit or most punctuation, the tokenizer still covers printable ASCII:
    every character alone and, for letters and digits, inside a word (a ##-piece)."""
    import string

    import datasets

    from ernie_cpt.data.tokenizer import train_tokenizer

    documents = datasets.Dataset.from_dict({"text": ["Letters written at Kellynch by Anne and her sister"] * 40})
    tokenizer = train_tokenizer(documents, vocab_size=1000)
    unk = tokenizer.unk_token_id

    for char in string.printable.strip():
        assert unk not in tokenizer(char, add_special_tokens=False)["input_ids"], repr(char)
        assert unk not in tokenizer(f"q{char}q{char}", add_special_tokens=False)["input_ids"], repr(char)
    assert unk not in tokenizer(string.printable, add_special_tokens=False)["input_ids"]
    # The report: titles "Letters 1" and "Letters 2" stay apart.
    assert tokenizer.tokenize("Letters 1") == ["letters", "1"] and tokenizer.tokenize("Letters 2") == ["letters", "2"]
    assert tokenizer.tokenize("letters12b") == ["letters", "##1", "##2", "##b"]


SAMPLE_TOKENIZER = Path(__file__).resolve().parents[2] / "data" / "sample-tokenizer"


def test_a_folder_without_tokenizer_json_is_refused_not_read_as_unk(tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(SAMPLE_TOKENIZER, folder)
    (folder / "tokenizer.json").unlink()  # transformers would build a 5-token BertTokenizer from the config alone
    with pytest.raises(UserError) as raised:
        load_tokenizer(folder)
    assert str(raised.value) == (
        f"{folder} has no usable tokenizer: no tokenizer.json or vocab.txt (a tokenizer built from "
        f"tokenizer_config.json alone has 5 tokens and reads every word as [UNK]); export the model again "
        f"(ernie-cpt export RUN OUT_DIR), or copy its tokenizer files into the folder")


@pytest.mark.parametrize(("name", "config"), [("config.json", {"vocab_size": 30522}),
                                              ("ernie_cpt_model.json", {"encoder_config": {"vocab_size": 30522}})])
def test_a_tokenizer_far_smaller_than_the_model_beside_it_is_refused(tmp_path, name, config):
    folder = tmp_path / "export"
    shutil.copytree(SAMPLE_TOKENIZER, folder)
    size = len(load_tokenizer(folder))
    (folder / name).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(UserError) as raised:
        load_tokenizer(folder)
    assert str(raised.value) == (
        f"the tokenizer in {folder} has {size} tokens, far fewer than the 30522 of the model's vocabulary: it is "
        f"not the tokenizer the model was trained with; export the model again (ernie-cpt export RUN OUT_DIR), or "
        f"copy its tokenizer files into the folder")
    (folder / name).write_text(json.dumps({"vocab_size": size} if name == "config.json" else
                                          {"encoder_config": {"vocab_size": size}}), encoding="utf-8")
    assert len(load_tokenizer(folder)) == size  # the tokenizer the model was trained with
