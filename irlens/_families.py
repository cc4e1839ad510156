"""Where each architecture keeps the modules behind irlens's hook-point names.

One row per family: dotted paths relative to the transformer body (for layer parts,
relative to one layer). Adding a family is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from irlens.errors import IrlensError

__all__ = ["Family", "FAMILIES", "family_of"]


@dataclass(frozen=True)
class Family:
    """Module paths of one architecture family."""

    name: str
    embeddings: str
    word_embeddings: str
    layers: str
    attn_self: str  # the self-attention module whose eager softmax irlens probes
    attn_out: str  # Linear: concatenated head outputs -> hidden (its input = head outputs)
    ffn_pre: str  # Linear: hidden -> intermediate, output before the activation
    ffn_post: str  # module whose output is the intermediate after the activation
    ffn_out: str  # Linear: intermediate -> hidden
    n_heads: str  # config attribute
    ffn_size: str  # config attribute
    hidden_size: str  # config attribute

    def get(self, body: nn.Module, part: str) -> nn.Module:
        return body.get_submodule(getattr(self, part))

    def layer_list(self, body: nn.Module) -> nn.ModuleList:
        return body.get_submodule(self.layers)


_BERT_LIKE = dict(
    embeddings="embeddings",
    word_embeddings="embeddings.word_embeddings",
    layers="encoder.layer",
    attn_self="attention.self",
    attn_out="attention.output.dense",
    ffn_pre="intermediate.dense",
    ffn_post="intermediate",
    ffn_out="output.dense",
    n_heads="num_attention_heads",
    ffn_size="intermediate_size",
    hidden_size="hidden_size",
)

FAMILIES: dict[str, Family] = {
    name: Family(name=name, **_BERT_LIKE)
    for name in ("bert", "roberta", "xlm-roberta", "camembert", "electra")
}
FAMILIES["distilbert"] = Family(
    name="distilbert",
    embeddings="embeddings",
    word_embeddings="embeddings.word_embeddings",
    layers="transformer.layer",
    attn_self="attention",
    attn_out="attention.out_lin",
    ffn_pre="ffn.lin1",
    ffn_post="ffn.activation",
    ffn_out="ffn.lin2",
    n_heads="n_heads",
    ffn_size="hidden_dim",
    hidden_size="dim",
)


def family_of(body: nn.Module) -> Family:
    """The family row for a transformer body (``model.base_model`` of an HF model)."""
    model_type = getattr(getattr(body, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise IrlensError(
            f"irlens has no hook table for model type '{model_type}'; supported: {known}"
        )
    return FAMILIES[model_type]
