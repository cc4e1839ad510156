"""Every method runs with the model in bfloat16 on the CPU (issue 20: this catches tensors
made in float32 next to the model's own, or on another device), and its result agrees with
the same method on the float32 model within bfloat16's precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_model_dir

from irlens.activations.attribution import KnowledgeNeurons
from irlens.attribution import make_method
from irlens.attribution.pairs import IntegratedJacobians
from irlens.models import load_model
from irlens.neurons import NeuronIntegratedGradients
from irlens.patching import patch_pair, text_pair

pytestmark = pytest.mark.usefixtures("one_thread")

Q, D = "what do cats eat", "cats are small carnivores that eat mice and fish"


@pytest.fixture(scope="module", params=["bi", "cross"])
def pair(request, tmp_path_factory):
    path = tiny_model_dir(tmp_path_factory.mktemp(request.param), kind=request.param)
    return (load_model(str(path), device="cpu"),
            load_model(str(path), device="cpu", dtype="bfloat16"))


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b, scale: float) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape and np.all(np.isfinite(b))
    assert np.abs(a - b).max() <= 0.1 * max(scale, 1e-3)


@pytest.mark.parametrize("spec", ["ig(n_steps=4)", "sig(n_steps=3)", "occlusion", "gxi"])
def test_token_methods(pair, spec):
    f32, bf16 = pair
    before = _weights(bf16)
    [a] = make_method(spec, f32).attribute(Q, D)
    [b] = make_method(spec, bf16).attribute(Q, D)
    _same(a.scores, b.scores, np.abs(a.scores).max())
    assert all(torch.equal(v, _weights(bf16)[k]) for k, v in before.items())


def test_neuron_integrated_gradients(pair):
    f32, bf16 = pair
    a = NeuronIntegratedGradients(f32, n_steps=4).attribute([Q], [D])
    b = NeuronIntegratedGradients(bf16, n_steps=4).attribute([Q], [D])
    _same(a.ffn, b.ffn, np.abs(a.ffn).max())


def test_patching(pair):
    f32, bf16 = pair
    pert = text_pair(Q, D, "dogs are small carnivores that eat mice and fish")
    a, b = patch_pair(f32, pert), patch_pair(bf16, pert)
    assert abs(a.clean - b.clean) <= 0.05 * max(1.0, abs(a.clean))
    effect = max(float(a.ffn["denoise"].abs().max()), 1e-3)
    assert torch.isfinite(b.ffn["denoise"].float()).all()
    _same(a.ffn["denoise"].float(), b.ffn["denoise"].float(), effect * 10)


def test_bi_encoder_token_pairs_and_knowledge_neurons(pair):
    f32, bf16 = pair
    if not hasattr(f32, "encode_docs"):
        pytest.skip("token pairs and knowledge neurons are bi-encoder methods")
    [a] = IntegratedJacobians(f32, n_steps=4).attribute(Q, D)
    [b] = IntegratedJacobians(bf16, n_steps=4).attribute(Q, D)
    _same(a.matrix, b.matrix, np.abs(a.matrix).max())
    kn32 = KnowledgeNeurons(f32, n_steps=4).attribute([Q], "query", f32.encode_docs([D]))
    kn16 = KnowledgeNeurons(bf16, n_steps=4).attribute([Q], "query", bf16.encode_docs([D]))
    for name in ("keys", "values"):
        _same(kn32[name], kn16[name], np.abs(kn32[name]).max())
