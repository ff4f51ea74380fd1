"""The recursive splitter: size bound, overlap, and cuts at natural boundaries."""

from itertools import pairwise

from server.rag.chunking import ChunkingParams, split_text

PARAGRAPHS = "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} says something useful about topic {p}." for s in range(6))
    for p in range(8))


def test_every_chunk_fits_the_size_and_all_text_is_kept() -> None:
    params = ChunkingParams(size=300, overlap=60)
    chunks = split_text(PARAGRAPHS, params)
    assert len(chunks) > 5
    assert all(len(c) <= 300 for c in chunks)
    for p in range(8):
        for s in range(6):
            sentence = f"Paragraph {p} sentence {s} says"
            assert any(sentence in c for c in chunks), sentence


def test_chunks_end_at_sentence_or_paragraph_boundaries() -> None:
    chunks = split_text(PARAGRAPHS, ChunkingParams(size=300, overlap=60))
    assert all(c.endswith(".") for c in chunks)


def test_neighbouring_chunks_overlap_by_whole_sentences() -> None:
    chunks = split_text(PARAGRAPHS, ChunkingParams(size=300, overlap=120))
    shared = 0
    for before, after in pairwise(chunks):
        first_sentence = after.split(". ")[0]
        shared += first_sentence in before
    assert shared >= len(chunks) // 2


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert split_text("Just one line.") == ["Just one line."]
    assert split_text("  \n\n ") == []


def test_a_word_longer_than_the_chunk_is_cut_by_characters() -> None:
    chunks = split_text("x" * 250, ChunkingParams(size=100, overlap=0))
    assert chunks == ["x" * 100, "x" * 100, "x" * 50]

