"""Token attribution speed, memory and quadrature: irlens vs Captum and time-interpret.

Same run, same inputs (SciFact test queries with a relevant abstract, cut to an exact
token count), same baseline ([MASK]), rule (Gauss-Legendre) and steps:

- ``cross-ig``: cross-encoder IG, 16 pairs of 256 tokens x 50 steps: irlens inside a
  memory budget (``--budget``, 1GB) vs Captum ``LayerIntegratedGradients`` on the word
  embeddings at its fastest ``internal_batch_size`` (swept on a shorter run); Captum's
  single big batch is not run, its memory is extrapolated from the sweep.
- ``cross-sig``: SIG, 4 pairs of 64 tokens x 20 steps: irlens (all tokens and steps
  batched) vs time-interpret's ``SequentialIntegratedGradients`` (a Python loop per token).
- ``bi-query``: bi-encoder, query tokens explained against a fixed 256-token document,
  16 pairs x 50 steps: irlens vs Captum ``IntegratedGradients`` with the best wrapper,
  which encodes the fixed document once and passes its vector to every step.

Captum's model parameters are frozen (``requires_grad=False``) as irlens freezes them:
both sides need input gradients only, so neither saves activations for weight gradients.
- ``gap``: steps needed for a completeness gap under 1% of |F(x) - F(x')| on 50 real
  pairs (bi-encoder, document tokens, 128-token documents): Gauss-Legendre vs Riemann
  (trapezoid, left, right), from dF/dalpha at every node (nested grids share nodes).

A run of some ``--sections`` updates those in the JSON and keeps the others (each section
says when it was measured and the load average it ran under). Every timed method runs in
its own process: peak memory is the max RSS sampled above the
loaded model (CPU) or the max CUDA allocation. Achieved GFLOP/s = the path's
forward+backward FLOPs (PyTorch's FLOP counter on one row, times the rows) / seconds,
next to the machine's fp32 matmul GFLOP/s. The cross-encoder is all-MiniLM-L6-v2's body
with a new (untrained) one-logit head.

Usage: python benchmarks/attribution.py [--device auto|cpu|cuda] [--quick] [--rounds 3]
       [--sections cross-ig,cross-sig,bi-query,gap] [--budget 1GB] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact"
SECTIONS = ("cross-ig", "cross-sig", "bi-query", "gap")


# -- inputs -------------------------------------------------------------------------------

def _pairs(tokenizer, n: int, tokens: int, pair: bool, seed: int = 0):
    """``n`` SciFact (query, relevant abstract) pairs; the pair encoding (cross) or the
    document alone (bi) is cut to exactly ``tokens`` tokens."""
    from irlens.data import load_dataset, sample_pairs
    from irlens.paths import cut_text

    dataset = load_dataset(DATA)
    queries, docs = [], []
    for qid, doc_id in sample_pairs(dataset, None, seed=seed):
        query, doc = dataset.queries[qid], dataset.corpus[doc_id].contents
        n_q = len(tokenizer(query, add_special_tokens=False)["input_ids"]) if pair else -1
        room = tokens - n_q - 3 if pair else tokens - 2
        if len(tokenizer(doc, add_special_tokens=False)["input_ids"]) >= room > 0:
            queries.append(query)
            docs.append(cut_text(tokenizer, doc, room))
        if len(queries) == n:
            return queries, docs
    raise SystemExit(f"not enough SciFact pairs with {tokens} tokens")


class _Peak:
    """Peak memory above the current level: CUDA max allocated, or sampled RSS."""

    def __init__(self, device) -> None:
        import psutil
        import torch

        self.cuda = device.type == "cuda"
        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.proc.memory_info().rss
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def done(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return (self.peak - self.base) / 2**20


def _row_flops(model, batch, side=None) -> int:
    """Forward+backward FLOPs of one row (gradients for the inputs only)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from irlens.paths import frozen

    table = model.word_embeddings(side)
    with frozen(model), FlopCounterMode(display=False) as counter:
        x = table(batch.input_ids).detach().requires_grad_()
        out = model.forward_embeds(batch, x)
        if out.dim() > 1:  # bi-encoder vector: a dot product stands in for the score
            out = out.sum(-1)
        torch.autograd.grad(out.sum(), x)
    return counter.get_total_flops()


def _mask_baseline(model, batch, segments):
    import torch

    moves = torch.isin(batch.segments, torch.tensor(segments, device=batch.segments.device))
    return batch.input_ids.masked_fill(moves, model.tokenizer.mask_token_id)


# -- workers (one timed method per process) ------------------------------------------------

def worker(a: argparse.Namespace) -> None:
    import torch

    from irlens.models import Segment as S
    from irlens.models import load_model

    if a.threads:
        torch.set_num_threads(a.threads)
    cross = a.task in ("ig", "lig", "sig", "tint")
    model = load_model(a.model if cross else "default", device=a.device,
                       kind="cross" if cross else "auto")
    queries, docs = _pairs(model.tokenizer, a.pairs, a.tokens, pair=cross)
    if a.task in ("lig", "tint", "bi-captum"):  # Captum needs input gradients only
        model.requires_grad_(False)
    info: dict = {"task": a.task, "pairs": a.pairs, "tokens": a.tokens, "steps": a.steps}
    run, flops = _make_run(a, model, queries, docs, info, S)
    if a.task not in ("sig", "tint"):  # SIG runs are long enough to need no warm-up
        run(1)  # warm-up on one pair: kernels, allocator, lazy imports
    peak = _Peak(model.device)
    start = time.perf_counter()
    out = run(None)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    info.update(seconds=round(seconds, 3), pairs_per_s=a.pairs / seconds,
                peak_memory_mb=round(peak.done(), 1),
                peak_kind="cuda max allocated" if model.device.type == "cuda"
                else "max RSS above the loaded model (sampled)",
                path_gflop=flops / 1e9, gflops=flops / seconds / 1e9,
                device=str(model.device), threads=torch.get_num_threads())
    if a.save:
        torch.save(out.cpu(), a.save)
    print(json.dumps(info))


def _make_run(a, model, queries, docs, info, S):
    """The timed callable (n pairs -> attributions [P, T]) and the path's FLOPs."""
    import torch

    from irlens.attribution import IntegratedGradients, SequentialIntegratedGradients

    def dense(results, width):
        out = torch.zeros(len(results), width)
        for i, r in enumerate(results):
            out[i, :len(r.scores)] = torch.tensor(r.scores)
        return out

    if a.task in ("ig", "lig", "sig", "tint"):
        batch = model.tokenize(queries, docs)
        n_move = int(torch.isin(batch.segments, torch.tensor([S.QUERY, S.DOC])).sum())
        rows = a.pairs * a.steps if a.task in ("ig", "lig") else n_move * a.steps
        flops = _row_flops(model, model.tokenize(queries[:1], docs[:1])) * rows
        info["rows"] = rows
        if a.task in ("ig", "sig"):
            cls = IntegratedGradients if a.task == "ig" else SequentialIntegratedGradients
            method = cls(model, "mask", a.steps, target="both", output="logit",
                         memory_budget=a.budget, gap_tolerance=1.0)

            def run(n):
                return dense(method.attribute(queries[:n], docs[:n]), batch.input_ids.shape[1])
            return run, flops
        return _captum_cross(a, model, queries, docs, S), flops
    return _bi_query(a, model, queries, docs, info, S)


def _captum_cross(a, model, queries, docs, S):
    from captum.attr import LayerIntegratedGradients
    from tint.attr import SequentialIntegratedGradients as TintSIG

    def forward(inputs, mask, tt, embeds=False):
        key = "inputs_embeds" if embeds else "input_ids"
        return model.model(**{key: inputs}, attention_mask=mask, token_type_ids=tt).logits[:, 0]

    def run(n):
        batch = model.tokenize(queries[:n], docs[:n])
        base = _mask_baseline(model, batch, [S.QUERY, S.DOC])
        args = (batch.attention_mask, batch.token_type_ids)
        if a.task == "lig":
            lig = LayerIntegratedGradients(forward, model.word_embeddings())
            return lig.attribute(batch.input_ids, base, additional_forward_args=args,
                                 n_steps=a.steps, method="gausslegendre",
                                 internal_batch_size=max(a.internal_batch, len(queries[:n]))
                                 ).sum(-1).detach()
        table = model.word_embeddings()
        x, x0 = table(batch.input_ids).detach(), table(base).detach()
        sig = TintSIG(lambda e, m, t: forward(e, m, t, embeds=True))
        return sig.attribute(x, x0, additional_forward_args=args, n_steps=a.steps,
                             method="gausslegendre").sum(-1).detach()
    return run


def _bi_query(a, model, queries, docs, info, S):
    """Query tokens against a fixed document: irlens, or Captum with the document's
    vector encoded once (the best wrapper)."""
    import torch
    from captum.attr import IntegratedGradients as CaptumIG

    from irlens.attribution import IntegratedGradients
    from irlens.models import Batch

    qb = model.tokenize(queries, "query")
    width = qb.input_ids.shape[1]
    flops = sum(_row_flops(model, model.tokenize([q], "query")) for q in queries) * a.steps
    info["rows"] = a.pairs * a.steps
    if a.task == "bi":
        method = IntegratedGradients(model, "mask", a.steps, target="query",
                                     memory_budget=a.budget, gap_tolerance=1.0)

        def run(n):
            out = torch.zeros(len(queries[:n]), width)
            for i, r in enumerate(method.attribute(queries[:n], docs[:n])):
                n_q = r.segments.index(S.CLS, 1)
                out[i, :n_q] = torch.tensor(r.scores[:n_q])
            return out
        return run, flops

    def run(n):
        q = model.tokenize(queries[:n], "query")
        with torch.no_grad():  # the fixed side, encoded once
            dv = model.forward_embeds(model.tokenize(docs[:n], "doc"))
        table = model.word_embeddings("query")
        x, x0 = table(q.input_ids).detach(), table(_mask_baseline(model, q, [S.QUERY])).detach()

        def forward(e, q_mask, d_vec):
            rows = len(e)
            qv = model.forward_embeds(Batch(q.input_ids[:1].expand(rows, -1), q_mask,
                                            q.segments[:1].expand(rows, -1),
                                            torch.zeros_like(q_mask), "query"), e)
            return model.pair_similarity(qv, d_vec)
        return CaptumIG(forward).attribute(
            x, x0, additional_forward_args=(q.attention_mask, dv),
            n_steps=a.steps, method="gausslegendre", internal_batch_size=a.internal_batch
        ).sum(-1).detach()
    return run, flops


def gap_worker(a: argparse.Namespace) -> None:
    """dF/dalpha at every node of every rule, then each rule's gap per pair."""
    import torch

    from irlens.data import load_dataset, sample_pairs
    from irlens.models import load_model
    from irlens.paths import Engine, Rows, build_problem, frozen, prepare_texts, quadrature

    model = load_model("default", device=a.device)
    dataset = load_dataset(DATA)
    pairs = sample_pairs(dataset, a.pairs, seed=0)
    queries, docs, _ = prepare_texts(model, [dataset.queries[q] for q, _ in pairs],
                                     [dataset.corpus[d].contents for _, d in pairs], a.tokens)
    problem = build_problem(model, queries, docs, "doc", "mask", "cosine", a.budget)
    engine = Engine(problem, a.budget)
    stream = problem.streams[0]
    ends = engine.values(Rows.make(torch.arange(a.pairs).repeat(2), [1.0] * a.pairs
                                   + [0.0] * a.pairs, 1.0))
    delta = (ends[:a.pairs] - ends[a.pairs:]).double()
    rules = {f"gausslegendre-{n}": quadrature(n, "gausslegendre") for n in a.gl_steps}
    grid = a.riemann_max  # nested: every trapezoid/left/right rule on 2^k intervals
    for k in range(1, 20):
        n = 2 ** k
        if n > grid:
            break
        rules[f"riemann_trapezoid-{n + 1}"] = quadrature(n + 1, "riemann_trapezoid")
        rules[f"riemann_left-{n}"] = quadrature(n, "riemann_left")
        rules[f"riemann_right-{n}"] = quadrature(n, "riemann_right")
    nodes = sorted({round(float(x), 12) for alphas, _ in rules.values() for x in alphas})
    derivative: dict[float, torch.Tensor] = {}
    start = time.perf_counter()
    with frozen(model), torch.enable_grad():
        for alpha in nodes:  # dF/dalpha = sum_i dF/dx_i . (x_i - x'_i), all pairs at once
            rows = Rows.ends(a.pairs, alpha)
            acc = engine.gradients(rows)[-1][0]
            derivative[alpha] = (acc * (stream.x - stream.x0).float()).sum((1, 2)).double().cpu()
    seconds = time.perf_counter() - start
    table = {}
    for name, (alphas, weights) in rules.items():
        total = sum(float(w) * derivative[round(float(x), 12)]
                    for x, w in zip(alphas, weights, strict=True))
        rel = ((total - delta).abs() / delta.abs().clamp(min=1e-12)).tolist()
        table[name] = {"median_rel_gap": sorted(rel)[len(rel) // 2], "max_rel_gap": max(rel),
                       "share_under_1pct": sum(r < 0.01 for r in rel) / len(rel)}
    best = {}
    for family in ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right"):
        ok = [int(n.split("-")[1]) for n, v in table.items()
              if n.startswith(family + "-") and v["max_rel_gap"] < 0.01]
        best[family] = min(ok) if ok else None
    print(json.dumps({"task": "gap", "pairs": a.pairs, "doc_tokens": a.tokens,
                      "target": "doc", "baseline": "mask", "nodes": len(nodes),
                      "seconds": round(seconds, 1), "rules": table,
                      "fewest_steps_all_pairs_under_1pct": best,
                      "median_abs_delta": float(delta.abs().median())}))


# -- driver -------------------------------------------------------------------------------

def _spawn(a: argparse.Namespace, task: str, **kw) -> dict:
    spec = {"pairs": a.pairs, "tokens": a.tokens, "steps": a.steps, "internal_batch": 0,
            "budget": a.budget, "save": None, **kw}
    cmd = [sys.executable, __file__, "--worker", task, "--device", a.device, "--model",
           a.model, "--threads", str(a.threads)]
    for key, value in spec.items():
        if value is None:
            continue
        if isinstance(value, list):
            cmd += [f"--{key.replace('_', '-')}", *map(str, value)]
        else:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    print(f"running {task} {kw}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{task} failed:\n{out.stderr[-3000:]}")
    result = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
    result["loadavg"] = os.getloadavg()[0]
    print("   ", {k: v for k, v in result.items() if k != "rules"}, flush=True)
    return result


def _paired(a: argparse.Namespace, ours: tuple, theirs: tuple) -> tuple[dict, dict]:
    """Both sides ``a.rounds`` times, alternating; the fastest run of each (all kept)."""
    runs: tuple[list, list] = ([], [])
    for r in range(a.rounds):
        for side, (task, kw) in enumerate((ours, theirs)):
            runs[side].append(_spawn(a, task, **(kw if r == 0 else
                                                  {**kw, "save": None})))
    best = [max(rs, key=lambda x: x["pairs_per_s"]) for rs in runs]
    for side in (0, 1):
        best[side] = {**best[side], "all_seconds": [x["seconds"] for x in runs[side]]}
    return best[0], best[1]


def _diff(path_a: Path, path_b: Path) -> float:
    import torch

    a, b = torch.load(path_a), torch.load(path_b)
    return float((a - b).abs().max())


def _cross_model(tmp: Path) -> str:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from irlens.models import resolve_model_path

    torch.manual_seed(0)
    path = resolve_model_path("default")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    folder = tmp / "minilm-cross"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)
    return str(folder)


def _matmul_gflops(device: str) -> float:
    import torch

    dev = torch.device(device)
    x = torch.randn(2048, 2048, device=dev)
    for _ in range(2):
        x @ x
    times = []
    for _ in range(5):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        x @ x
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / sorted(times)[len(times) // 2] / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="Small sizes (a shared machine).")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--budget", default="1GB", help="irlens memory budget.")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3,
                   help="Run each comparison this many times, alternating sides; keep the "
                   "best of each (a busy machine's noise).")
    p.add_argument("--model", default="", help="Cross-encoder folder [default: MiniLM body "
                   "with a new head, built in a temporary folder].")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks/results/attribution.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    for name, kind in (("pairs", int), ("tokens", int), ("steps", int),
                       ("internal-batch", int), ("save", str)):
        p.add_argument(f"--{name}", type=kind, default=None, help=argparse.SUPPRESS)
    p.add_argument("--gl-steps", type=int, nargs="*", default=None, help=argparse.SUPPRESS)
    p.add_argument("--riemann-max", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        a.task = a.worker
        gap_worker(a) if a.worker == "gap" else worker(a)
        return
    import torch

    from irlens._io import write_json

    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    q = a.quick
    sizes = {
        "cross-ig": (4, 128, 16) if q else (16, 256, 50),
        "sweep": (4, 128, 4) if q else (16, 256, 8),
        "cross-sig": (1, 32, 8) if q else (4, 64, 20),
        "bi-query": (4, 128, 16) if q else (16, 256, 50),
        "gap": (8, 64, 0) if q else (50, 128, 0),
    }
    sections = a.sections.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="irlens-bench-"))
    a.model = a.model or _cross_model(tmp)
    report: dict = {
        "what": "token attribution: irlens vs Captum / time-interpret, same inputs and steps",
        "device": a.device if a.device == "cpu" else torch.cuda.get_device_name(0),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "matmul_fp32_gflops": _matmul_gflops(a.device),
                    "loadavg_before": os.getloadavg()},
        "budget": a.budget, "quick": q, "sections": {},
    }

    def use(section):
        a.pairs, a.tokens, a.steps = sizes[section]

    if "cross-ig" in sections:
        use("sweep")
        sizes_ = (8, 32) if q else (16, 32, 64, 128) + ((256, 800) if a.device == "cuda" else ())
        sweep = {b: _spawn(a, "lig", internal_batch=b) for b in sizes_}
        best = max(sweep, key=lambda b: sweep[b]["pairs_per_s"])
        use("cross-ig")
        ours, theirs = _paired(a, ("ig", {"save": str(tmp / "ig.pt")}),
                               ("lig", {"internal_batch": best, "save": str(tmp / "lig.pt")}))
        b1, b2 = sorted(sweep)[:2]
        per_row = (sweep[b2]["peak_memory_mb"] - sweep[b1]["peak_memory_mb"]) / (b2 - b1)
        report["sections"]["cross-ig"] = {
            "config": {"pairs": a.pairs, "tokens": a.tokens, "steps": a.steps,
                       "rule": "gausslegendre", "baseline": "mask", "output": "logit"},
            "irlens": ours, "captum_lig": theirs, "captum_sweep": sweep,
            "captum_best_internal_batch_size": best,
            "speed_ratio": ours["pairs_per_s"] / theirs["pairs_per_s"],
            "captum_single_batch_mb_extrapolated": round(
                sweep[b1]["peak_memory_mb"] + per_row * (a.pairs * a.steps - b1)),
            "max_abs_diff": _diff(tmp / "ig.pt", tmp / "lig.pt")}
    if "cross-sig" in sections:
        use("cross-sig")
        ours, theirs = _paired(a, ("sig", {"save": str(tmp / "sig.pt")}),
                               ("tint", {"save": str(tmp / "tint.pt")}))
        report["sections"]["cross-sig"] = {
            "config": {"pairs": a.pairs, "tokens": a.tokens, "steps": a.steps},
            "irlens": ours, "time_interpret": theirs,
            "speed_ratio": ours["pairs_per_s"] / theirs["pairs_per_s"],
            "max_abs_diff": _diff(tmp / "sig.pt", tmp / "tint.pt")}
    if "bi-query" in sections:
        use("bi-query")
        ours, theirs = _paired(a, ("bi", {"save": str(tmp / "bi.pt")}),
                               ("bi-captum", {"internal_batch": a.steps,
                                              "save": str(tmp / "bic.pt")}))
        report["sections"]["bi-query"] = {
            "config": {"pairs": a.pairs, "doc_tokens": a.tokens, "steps": a.steps,
                       "target": "query", "captum_internal_batch_size": a.steps},
            "irlens": ours, "captum_doc_encoded_once": theirs,
            "speed_ratio": ours["pairs_per_s"] / theirs["pairs_per_s"],
            "max_abs_diff": _diff(tmp / "bi.pt", tmp / "bic.pt")}
    if "gap" in sections:
        use("gap")
        report["sections"]["gap"] = _spawn(
            a, "gap", gl_steps=[2, 4, 8] if q else [4, 6, 8, 12, 16, 24],
            riemann_max=16 if q else 64)
    report["machine"]["loadavg_after"] = os.getloadavg()
    out = a.output
    if a.device == "cuda" and out == REPO / "benchmarks/results/attribution.json":
        out = out.with_name("attribution-cuda.json")  # keeps the CPU results beside it
    stamp = time.strftime("%Y-%m-%d %H:%M")
    for section in report["sections"].values():
        section["measured"] = stamp
    if out.is_file():  # a run of some sections keeps the others' earlier results
        old = json.loads(out.read_text())
        if old.get("device") == report["device"]:
            report["sections"] = {**old.get("sections", {}), **report["sections"]}
    write_json(out, report)
    _print(report)
    print(f"wrote {out}")


def _print(report: dict) -> None:
    s = report["sections"]
    peak = report["machine"]["matmul_fp32_gflops"]
    print(f"\ndevice {report['device']}, fp32 matmul {peak:.0f} GFLOP/s, budget "
          f"{report['budget']}")
    print(f"{'comparison':<34}{'irlens p/s':>11}{'other p/s':>11}{'ratio':>8}"
          f"{'irlens MB':>11}{'other MB':>10}{'GFLOP/s':>9}{'max|diff|':>11}")
    for key, other in (("cross-ig", "captum_lig"), ("cross-sig", "time_interpret"),
                       ("bi-query", "captum_doc_encoded_once")):
        if key in s:
            r = s[key]
            print(f"{key + ' vs ' + other:<34}{r['irlens']['pairs_per_s']:>11.3f}"
                  f"{r[other]['pairs_per_s']:>11.3f}{r['speed_ratio']:>8.2f}"
                  f"{r['irlens']['peak_memory_mb']:>11.0f}{r[other]['peak_memory_mb']:>10.0f}"
                  f"{r['irlens']['gflops']:>9.1f}{r['max_abs_diff']:>11.2e}")
    if "cross-ig" in s:
        print(f"Captum single batch (extrapolated): "
              f"{s['cross-ig']['captum_single_batch_mb_extrapolated']} MB")
    if "gap" in s:
        print("fewest steps with every pair's gap < 1%:",
              s["gap"]["fewest_steps_all_pairs_under_1pct"])


if __name__ == "__main__":
    main()
