"""Tiny, randomly initialised, deterministic retrievers of every supported family.

Saved as real model folders and loaded through ``irlens.load_model``, so the whole
loading path is exercised. The tokenizer is the real all-MiniLM-L6-v2 WordPiece vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertTokenizerFast,
)

from irlens.models import BiEncoder, CrossEncoder, load_model, resolve_model_path

FAMILIES = ("bert", "roberta", "distilbert", "electra")

_SIZES = {
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=48),
    "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=48, type_vocab_size=1, pad_token_id=0,
                    max_position_embeddings=130),
    "electra": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=48, embedding_size=24),
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=48),
}


def tiny_model_dir(root: Path, family: str = "bert", kind: str = "bi", num_labels: int = 1,
                   seed: int = 0) -> Path:
    """Write a tiny random model folder (weights, config, tokenizer) and return its path."""
    folder = Path(root) / f"{family}-{kind}-{num_labels}-{seed}"
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast.from_pretrained(resolve_model_path("default"))
    if family in ("roberta", "distilbert"):
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    tokenizer.model_max_length = 128
    config = AutoConfig.for_model(family, vocab_size=tokenizer.vocab_size,
                                  **_SIZES[family])
    config.attn_implementation = "sdpa"
    if kind == "cross":
        config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModel.from_config(config)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_model(root: Path, family: str = "bert", kind: str = "bi", num_labels: int = 1,
               seed: int = 0, **kwargs) -> BiEncoder | CrossEncoder:
    """A loaded tiny retriever (CPU, float32)."""
    path = tiny_model_dir(root, family, kind, num_labels, seed)
    return load_model(str(path), device="cpu", **kwargs)
