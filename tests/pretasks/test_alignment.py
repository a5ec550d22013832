import numpy as np

from pretasks.alignment import DocumentTokens, pack_segments, tokenize_documents


def _tokens() -> DocumentTokens:
    # "Anne Elliot sat." -> anne(0,4) elli(5,9) ##ot(9,11) sat(12,15) .(15,16)
    return DocumentTokens(ids=np.arange(5), starts=np.array([0, 5, 9, 12, 15]), ends=np.array([4, 9, 11, 15, 16]),
                          word_ids=np.array([0, 1, 1, 2, 3]))


def test_token_range_covers_every_overlapping_token():
    tokens = _tokens()
    assert tokens.token_range(0, 11) == (0, 3)  # "Anne Elliot"
    assert tokens.token_range(5, 11) == (1, 3)  # "Elliot": both sub-tokens
    assert tokens.token_range(6, 8) == (1, 2)  # inside one token
    assert tokens.token_range(11, 12) == (3, 3)  # only the space: empty
    assert tokens.token_ranges([0, 11, 12], [11, 12, 16]).tolist() == [[0, 3], [3, 5]]


def test_word_ranges_group_sub_tokens():
    assert _tokens().word_ranges().tolist() == [[0, 1], [1, 3], [3, 4], [4, 5]]


def test_pack_segments_cuts_at_sentence_starts_and_inside_long_sentences():
    assert pack_segments(10, np.array([0, 4, 7]), max_tokens=5) == [(0, 4), (4, 7), (7, 10)]
    assert pack_segments(10, np.array([0, 4, 7]), max_tokens=8) == [(0, 7), (7, 10)]
    assert pack_segments(12, np.array([0]), max_tokens=5) == [(0, 5), (5, 10), (10, 12)]


def test_tokenize_documents_gives_document_offsets(sample_annotations, sample_tokenizer):
    batch = sample_annotations[:2]
    documents = tokenize_documents(sample_tokenizer, batch)
    assert len(documents) == 2
    for text, tokens in zip(batch["text"], documents):
        assert len(tokens) > 100
        # Every token's character span, lower-cased, is the token itself (minus the ## prefix).
        for token_id, start, end in list(zip(tokens.ids, tokens.starts, tokens.ends))[:300]:
            piece = sample_tokenizer.convert_ids_to_tokens(int(token_id)).removeprefix("##")
            if piece != "[UNK]":
                assert text[start:end].lower() == piece
        assert np.all(np.diff(tokens.starts) >= 0)
        assert np.all(np.diff(tokens.word_ids) >= 0)
