"""One path engine for every gradient-path method in irlens.

A *problem* (:func:`build_problem`) holds the token streams of a batch of (query,
document) pairs, what moves along the path (word embeddings from a baseline, and
optionally hooked layers' activations: :meth:`Problem.add_points`) and ``F``, one
scalar per row. *Rows* (:class:`Rows`) are points on paths: (pair, alpha, weight,
moving token, moving layer). The :class:`Engine` runs rows in chunks under one
``memory_budget``, parameters frozen, one forward and one backward per chunk, and hands
each chunk to the consumer's reduction callback. Integrated Gradients, Sequential IG,
occlusion, gradient x input (:mod:`irlens.attribution`) and Neuron IG
(:mod:`irlens.neurons`) are thin consumers.

A new consumer defines its rows and its reduction. Example: attributions of every FFN
unit of layer 3 at the document tokens, scaling the layer's activation from 0 to its
value (knowledge-neuron attribution, Dai et al., ACL 2022)::

    from irlens.paths import Engine, Rows, build_problem, quadrature

    problem = build_problem(model, queries, docs, target="doc", baseline="mask",
                            output="similarity")
    problem.add_points(["layer.3.ffn.post"], baseline="zero")      # layer j = 0
    alphas, weights = quadrature(20, "gausslegendre")
    rows = Rows.paths(problem.n_pairs, alphas, weights, layer=0)
    engine = Engine(problem, memory_budget="1GB")
    grad = engine.gradients(rows)[0][0]                # sum_k w_k dF/dh(a_k) [P, T, U]
    h, h0 = problem.streams[0].acts[0]
    attribution = (grad * (h - h0)).sum(1)             # per unit [P, U]

or, for any other reduction, a callback over chunks::

    def reduce(chunk):                                  # a Chunk: rows, values, grads
        g = chunk.grads[0][0]                           # [R, t, U] for these rows
        per_row = (g * chunk.inputs[0][0]).sum((1, 2))  # any per-row statistic
        totals.index_add_(0, chunk.pair, per_row * chunk.rows.weight)
    engine.run(rows, reduce)

``Engine(problem, capture=[...hook names...])`` also hands each chunk the captured
activations and their gradients (``chunk.acts``, ``chunk.act_grads``), as Neuron IG uses.
Chunks hold a pair's rows contiguous and in the order given, so a consumer can carry the
last row of a pair into the next chunk.
"""

from irlens.paths.baselines import BASELINES, Baseline
from irlens.paths.engine import Chunk, Engine, Rows, frozen, parse_memory
from irlens.paths.problem import (
    TARGETS,
    Problem,
    Stream,
    build_problem,
    cut_text,
    encode_side,
    prepare_texts,
    split_sides,
)
from irlens.paths.quadrature import RULES, quadrature

__all__ = [
    "BASELINES",
    "RULES",
    "TARGETS",
    "Baseline",
    "Chunk",
    "Engine",
    "Problem",
    "Rows",
    "Stream",
    "build_problem",
    "cut_text",
    "encode_side",
    "frozen",
    "parse_memory",
    "prepare_texts",
    "quadrature",
    "split_sides",
]
