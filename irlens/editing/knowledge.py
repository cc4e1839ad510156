"""Knowledge-neuron editing (Dai et al. 2022, "Knowledge Neurons in Pretrained
Transformers"), adapted to retrieval.

The FFN units ("keys", ``layer.{l}.ffn.post``) of the query tower are attributed to the
(query, document) similarity by integrated gradients over scaling each layer's
activation (:class:`irlens.activations.KnowledgeNeurons`). As in the paper, a unit is
kept when its attribution exceeds ``threshold`` x the prompt's largest on at least
``share`` of the prompts (the query and its paraphrases), at most ``max_units`` of them
by mean attribution. The edit then scales those units' value slots (their columns of the
FFN output matrix): by 0 to remove the fact (suppression), by ``amplify`` to insert it.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from irlens.editing.edit import Edit
from irlens.editing.editors import _check, _restored
from irlens.editing.requests import EditRequest
from irlens.hooks import hook_points
from irlens.models import BiEncoder

__all__ = ["KnowledgeNeuronEditor"]


class KnowledgeNeuronEditor:
    """Suppress (remove) or amplify (insert) the knowledge neurons of each request."""

    name = "kn"

    def __init__(self, layer: int | None = None, threshold: float = 0.2, share: float = 0.5,
                 max_units: int = 20, amplify: float = 2.0, n_steps: int = 20,
                 steps: int | None = None):
        self.layer, self.threshold, self.share = layer, threshold, share
        self.max_units, self.amplify, self.n_steps = max_units, amplify, n_steps

    def get_params(self) -> dict:
        return {"layer": self.layer, "threshold": self.threshold, "share": self.share,
                "max_units": self.max_units, "amplify": self.amplify,
                "n_steps": self.n_steps}

    def neurons(self, model: BiEncoder, request: EditRequest) -> list[tuple[int, int]]:
        """(layer, unit) pairs attributed to the request's (query, document) score."""
        from irlens.activations import KnowledgeNeurons

        prompts = [request.query, *request.paraphrases]
        with torch.no_grad():
            partner = model.encode_docs([request.doc]).repeat(len(prompts), 1)
        attr = KnowledgeNeurons(model, n_steps=self.n_steps, sublayers=("keys",),
                                target="relevance").attribute(prompts, "query",
                                                              partners=partner)["keys"]
        if self.layer is not None:
            keep = np.zeros_like(attr)
            keep[:, self.layer] = 1
            attr = attr * keep
        peak = attr.reshape(len(prompts), -1).max(1).clip(min=1e-12)
        active = attr > self.threshold * peak[:, None, None]
        shared = active.mean(0) >= self.share
        mean = np.where(shared, attr.mean(0), -np.inf)
        order = np.argsort(mean, axis=None)[::-1][:self.max_units]
        return [tuple(int(i) for i in np.unravel_index(j, mean.shape)) for j in order
                if np.isfinite(mean.flat[j])]

    def fit(self, model: BiEncoder, requests: list[EditRequest]) -> Edit:
        _check(model, requests, self.layer)
        points = hook_points(model, "query")
        linears = {}
        for name, p in model.named_parameters():
            for layer in range(sum(q.kind == "resid" for q in points.values())):
                if p is points[f"layer.{layer}.ffn.out"].module.weight:
                    linears[layer] = name
        params = dict(model.named_parameters())
        start, chosen = time.perf_counter(), []
        with _restored(model, list(linears.values())) as saved:
            for request in requests:  # sequential: attributions see the earlier edits
                units = self.neurons(model, request)
                chosen.append(units)
                factor = 0.0 if request.kind == "remove" else self.amplify
                with torch.no_grad():
                    for layer, unit in units:
                        params[linears[layer]][:, unit] *= factor
            deltas = {n: (params[n].detach() - saved[n]).clone() for n in linears.values()}
        deltas = {n: d for n, d in deltas.items() if bool(d.any())}
        return Edit(self.name, deltas, {**self.get_params(), "neurons": chosen,
                                        "seconds": time.perf_counter() - start})
