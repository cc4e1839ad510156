"""Activation patching of one clean/corrupted pair (MechIR, Parry et al. 2025).

Both inputs run; then one component's activation is copied from one run (the source)
into the other (the target), and the score is compared:

    effect = (patched - corrupted) / (clean - corrupted)

*Denoising* patches clean activations into the corrupted run (1 = the component alone
restores the clean score); *noising* patches corrupted activations into the clean run
(1 = the component is not needed, 0 = it carries the whole difference). Components:
the residual stream after each layer at each position (``layer.{i}.resid``), each
attention head's output (``layer.{i}.attn.heads``, all positions) and each FFN output
(``layer.{i}.ffn.out``, all positions). All components of one kind run as rows of one
batched forward (the target input repeated), each row patching only its own component.

**Alignment.** When the inputs differ in length (an inserted or replaced word), target
positions are matched to source positions by the longest matching blocks of token ids
(:class:`difflib.SequenceMatcher`); a replaced run of equal length is matched token by
token (a substituted word is patched with its counterpart); inserted or deleted tokens,
and replaced runs of unequal length, get no partner, are never patched, and their
residual effects are NaN. Inputs that share
less than half of their tokens are refused: they are not a perturbation of each other.

Cross-encoders patch the one ``[CLS] q [SEP] d [SEP]`` sequence; bi-encoders patch the
side that differs, with the other side's vector fixed (it is the same in both runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

import torch

from irlens.errors import IrlensError
from irlens.hooks import capture, hook_points, intervene
from irlens.models import Batch, BiEncoder, CrossEncoder, Retriever, Segment
from irlens.patching.axioms import Perturbation

__all__ = ["KINDS", "ROLES", "PairPatch", "Runner", "align", "patch_pair", "run_rows"]

KINDS = ("resid", "heads", "ffn")
_POINT = {"resid": "resid", "heads": "attn.heads", "ffn": "ffn.out"}
ROLES = ("cls", "query", "sep", "doc", "term", "end")
MIN_SHARED = 0.5


def align(target: list[int], source: list[int], what: str = "inputs") -> list[int]:
    """For each target position, its partner in ``source`` (-1: none); see the module
    docstring."""
    matcher = SequenceMatcher(None, target, source, autojunk=False)
    partner = [-1] * len(target)
    shared = 0
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal" or (op == "replace" and i2 - i1 == j2 - j1):
            for k in range(i2 - i1):
                partner[i1 + k] = j1 + k
        shared += (i2 - i1) if op == "equal" else 0
    if shared < MIN_SHARED * max(len(target), len(source)):
        raise IrlensError(f"the clean and corrupted {what} share only {shared} of "
                          f"{max(len(target), len(source))} tokens; patching needs inputs that "
                          "differ in a few words (a perturbation), not unrelated texts")
    return partner


class Runner:
    """Scores rows of one input (a cross-encoder pair, or one bi-encoder side with the
    other side's vector fixed) under per-row patches."""

    def __init__(self, model: Retriever, query: str, doc: str, side: str):
        self.model, self.side = model, side
        if isinstance(model, CrossEncoder):
            self.batch = model.tokenize([query], [doc])
            self.hook_side = None
            self.fixed = None
        elif isinstance(model, BiEncoder):
            other = "query" if side == "doc" else "doc"
            self.batch = model.tokenize([doc if side == "doc" else query], side)
            with torch.no_grad():
                self.fixed = model.embed([query if other == "query" else doc], other)
            self.hook_side = side
        else:
            raise IrlensError("patching needs an irlens BiEncoder or CrossEncoder; load one "
                              "with irlens.load_model")
        self.ids = self.batch.input_ids[0].tolist()
        self.segments = self.batch.segments[0].tolist()

    def rows(self, n: int) -> Batch:
        b = self.batch
        rep = lambda t: None if t is None else t.expand(n, -1)  # noqa: E731
        return Batch(rep(b.input_ids), rep(b.attention_mask), rep(b.segments),
                     rep(b.token_type_ids), b.side)

    @torch.no_grad()
    def score(self, n: int = 1) -> torch.Tensor:
        """Scores [n] of ``n`` copies of the input (hooks in force apply per row)."""
        model = self.model
        if isinstance(model, CrossEncoder):
            return model.forward_embeds(self.rows(n)).float()
        vec = model.forward_embeds(self.rows(n)).float()
        return model.pair_similarity(self.fixed.expand(n, -1), vec)

    def names(self, kind: str) -> list[str]:
        points = hook_points(self.model, self.hook_side)
        return [n for n, p in points.items() if p.kind == _POINT[kind]]

    @torch.no_grad()
    def cache(self) -> dict[str, torch.Tensor]:
        """Activations [T, units] of every patchable point in one forward."""
        names = [n for k in KINDS for n in self.names(k)]
        with capture(self.model, names, side=self.hook_side) as cache:
            self.score()
        return {n: cache[n][0] for n in names}


# a patch: (point name, head or None, target positions); a row is a list of patches
Patch = tuple[str, int | None, list[int]]


@torch.no_grad()
def run_rows(target: Runner, source: dict[str, torch.Tensor], partner: list[int],
             rows: list[list[Patch]], max_rows: int = 256) -> torch.Tensor:
    """Target scores [len(rows)], row r patched with ``source`` activations at its
    components (target position p takes source position ``partner[p]``)."""
    out = torch.empty(len(rows))
    for start in range(0, len(rows), max_rows):
        chunk = rows[start:start + max_rows]
        by_name: dict[str, list[tuple[int, int | None, list[int]]]] = {}
        for r, patches in enumerate(chunk):
            for name, head, positions in patches:
                pos = [p for p in positions if partner[p] >= 0]
                by_name.setdefault(name, []).append((r, head, pos))

        def edit(act: torch.Tensor, ctx, by_name=by_name) -> torch.Tensor:
            name = ctx.point.name
            act = act.clone()
            src = source[name].to(act.dtype)
            width = act.shape[-1] // ctx.point.units if ctx.point.kind == "attn.heads" else 0
            for r, head, pos in by_name[name]:
                if not pos:
                    continue
                tgt = torch.tensor(pos)
                s = torch.tensor([partner[p] for p in pos])
                if head is None:
                    act[r, tgt] = src[s]
                else:
                    sl = slice(head * width, (head + 1) * width)
                    act[r, tgt, sl] = src[s, sl]
            return act

        with intervene(target.model, {n: edit for n in by_name}, side=target.hook_side,
                       label="patch"):
            out[start:start + len(chunk)] = target.score(len(chunk)).cpu()
    return out


@dataclass
class PairPatch:
    """Effects of one pair, per direction (``denoise``, ``noise``).

    ``resid[d]``: [layers, target positions] (NaN where a position has no partner),
    ``heads[d]``: [layers, heads], ``ffn[d]``: [layers]; ``roles[d]``: the role of each
    target position (:data:`ROLES`).
    """

    clean: float
    corrupted: float
    resid: dict[str, torch.Tensor]
    heads: dict[str, torch.Tensor]
    ffn: dict[str, torch.Tensor]
    roles: dict[str, list[str]]


def _roles(runner: Runner, term_ids: set[int]) -> list[str]:
    names = {Segment.CLS: "cls", Segment.QUERY: "query", Segment.SEP: "sep",
             Segment.DOC: "doc", Segment.END: "end"}
    out = []
    for seg, tok in zip(runner.segments, runner.ids, strict=True):
        role = names.get(seg, "end")
        if seg == Segment.DOC and tok in term_ids:
            role = "term"
        out.append(role)
    return out


def patch_pair(model: Retriever, pert: Perturbation, kinds: tuple[str, ...] = KINDS,
               directions: tuple[str, ...] = ("denoise", "noise"), max_rows: int = 256,
               resid: str = "positions") -> PairPatch:
    """Patch every component of ``kinds`` in both directions for one perturbation.

    ``resid="positions"`` patches the residual stream one (layer, position) at a time
    (``resid[d]``: [layers, positions]); ``"roles"`` patches all positions of one token
    role at once (``resid[d]``: [layers, len(ROLES)], NaN for absent roles), which costs
    layers x 6 rows instead of layers x positions.
    """
    if resid not in ("positions", "roles"):
        raise IrlensError(f"unknown resid mode '{resid}'; use positions or roles")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise IrlensError(f"unknown component kind '{bad[0]}'; use {', '.join(KINDS)}")
    clean = Runner(model, pert.clean_query, pert.clean_doc, pert.side)
    corrupt = Runner(model, pert.corrupt_query, pert.corrupt_doc, pert.side)
    s_clean, s_corrupt = float(clean.score()[0]), float(corrupt.score()[0])
    caches = {"clean": clean.cache(), "corrupt": corrupt.cache()}
    term_ids = set(model.tokenizer(pert.term, add_special_tokens=False)["input_ids"]) \
        if pert.term else set()
    delta = s_clean - s_corrupt
    out = PairPatch(s_clean, s_corrupt, {}, {}, {}, {})
    for direction in directions:
        target, source = (corrupt, "clean") if direction == "denoise" else (clean, "corrupt")
        src_runner = clean if direction == "denoise" else corrupt
        partner = align(target.ids, src_runner.ids)
        effect = lambda s: (s - s_corrupt) / delta  # noqa: E731
        layers = target.names("resid")
        n_pos = len(target.ids)
        out.roles[direction] = _roles(target, term_ids)
        if "resid" in kinds and resid == "roles":
            labels = out.roles[direction]
            groups = [[p for p in range(n_pos) if labels[p] == role] for role in ROLES]
            rows = [[(n, None, g)] for n in layers for g in groups]
            r = effect(run_rows(target, caches[source], partner, rows, max_rows))
            r = r.view(len(layers), len(ROLES))
            r[:, torch.tensor([not any(partner[p] >= 0 for p in g) for g in groups])] = \
                float("nan")
            out.resid[direction] = r
        elif "resid" in kinds:
            rows = [[(n, None, [p])] for n in layers for p in range(n_pos)]
            r = effect(run_rows(target, caches[source], partner, rows, max_rows))
            r = r.view(len(layers), n_pos)
            r[:, torch.tensor(partner) < 0] = float("nan")
            out.resid[direction] = r
        if "heads" in kinds:
            names = target.names("heads")
            n_heads = hook_points(model, target.hook_side)[names[0]].units
            rows = [[(n, h, list(range(n_pos)))] for n in names for h in range(n_heads)]
            out.heads[direction] = effect(run_rows(target, caches[source], partner, rows,
                                                   max_rows)).view(len(names), n_heads)
        if "ffn" in kinds:
            rows = [[(n, None, list(range(n_pos)))] for n in target.names("ffn")]
            out.ffn[direction] = effect(run_rows(target, caches[source], partner, rows,
                                                 max_rows))
    return out
