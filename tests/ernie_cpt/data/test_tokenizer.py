from transformers import AutoTokenizer

from ernie_cpt.data.tokenizer import load_tokenizer


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
