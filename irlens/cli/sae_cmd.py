"""``irlens sae train|eval|explain|steer``: thin commands over :mod:`irlens.sae`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens._io import write_table
from irlens.cli._app import app, echo_json, friendly_errors
from irlens.errors import IrlensError
from irlens.options import checked
from irlens.options.sae import SAE_EVAL, SAE_EXPLAIN, SAE_STEER, SAE_TRAIN

sae_app = typer.Typer(help="Sparse autoencoders on a bi-encoder's vectors: train, measure "
                      "by retrieval, explain and steer.", no_args_is_help=True)
app.add_typer(sae_app, name="sae")



def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise IrlensError(f"{what} must be comma-separated integers, got '{text}'") from None
    if not values:
        raise IrlensError(f"{what} is empty; give integers such as 32,64")
    return values


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise IrlensError(f"{what} must be comma-separated numbers, got '{text}'") from None
    if not values:
        raise IrlensError(f"{what} is empty; give numbers such as 0.1,0.2")
    return values


def _datasets(data: list[Path], split: str, max_docs: int | None, max_queries: int | None):
    from irlens.data import load_dataset

    for path in data:
        if not Path(path).is_dir():
            raise IrlensError(f"{path} is not a folder; pass a BEIR folder to --data")
    return [load_dataset(p, split, max_docs=max_docs, max_queries=max_queries) for p in data]


def _sae_folders(path: Path) -> list[Path]:
    """An SAE folder, a training run (``run/sae``) or a train --out (``*/sae``)."""
    path = Path(path)
    for cand in (path, path / "sae"):
        if (cand / "cfg.json").is_file():
            return [cand]
    found = sorted(path.glob("*/sae/cfg.json"))
    if not found:
        raise IrlensError(f"no SAE under {path}; pass the --out folder of irlens sae train "
                          "or an SAE folder (cfg.json + sae_weights.safetensors)")
    return [p.parent for p in found]


def _load(model: str, max_length: int | None = None):
    from irlens.models import load_model

    return load_model(model, max_length=max_length)


@sae_app.command("train")
@friendly_errors
@checked(SAE_TRAIN)
def train_command(
    data: list[Path] = SAE_TRAIN.cli("data"),
    out: Path = SAE_TRAIN.cli("out"),
    model: str = SAE_TRAIN.cli("model"),
    queries: str = SAE_TRAIN.cli("queries"),
    k: str = SAE_TRAIN.cli("k"),
    expansion: int = SAE_TRAIN.cli("expansion"),
    batch_topk: bool = SAE_TRAIN.cli("batch_topk"),
    auxk_alpha: float = SAE_TRAIN.cli("auxk_alpha"),
    rank_kl: float = SAE_TRAIN.cli("rank_kl"),
    hook: str = SAE_TRAIN.cli("hook"),
    epochs: int = SAE_TRAIN.cli("epochs"),
    batch_size: int = SAE_TRAIN.cli("batch_size"),
    lr: float = SAE_TRAIN.cli("lr"),
    seed: int = SAE_TRAIN.cli("seed"),
    balance: bool = SAE_TRAIN.cli("balance"),
    max_docs: int = SAE_TRAIN.cli("max_docs"),
    max_queries: int = SAE_TRAIN.cli("max_queries"),
    max_length: int = SAE_TRAIN.cli("max_length"),
    embedding_cache: Path = SAE_TRAIN.cli("embedding_cache"),
    json_out: bool = SAE_TRAIN.cli("json_out"),
) -> None:
    """Cache the vectors of every document of --data and of its --queries splits' queries,
    then train SAEs."""
    from irlens.sae import SAEConfig, TrainConfig, cache_activations, train_sae
    from irlens.sae.cache import hook_width
    from irlens.sae.heldout import HELD_OUT, training_dataset

    ks = _ints(k, "--k")
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       balance=balance)
    splits = [s.strip() for s in queries.split(",") if s.strip() and s.strip() != "none"]
    for path in data:
        if not Path(path).is_dir():
            raise IrlensError(f"{path} is not a folder; pass a BEIR folder to --data")
    datasets = [training_dataset(p, splits, max_docs=max_docs, max_queries=max_queries)
                for p in data]
    if HELD_OUT in splits:
        typer.echo(f"note: training on the {HELD_OUT} queries: fidelity on them will be "
                   "in-sample", err=True)

    def sae_configs(dim: int) -> list[SAEConfig]:
        return [SAEConfig(d_in=dim, expansion_factor=expansion, k=one, batch_topk=batch_topk,
                          auxk_alpha=auxk_alpha, rank_kl=rank_kl) for one in ks]

    retriever = _load(model, max_length)
    configs = sae_configs(hook_width(retriever, hook))  # before any activation is cached
    acts = cache_activations(retriever, datasets, out / "cache", hook=hook,
                             embedding_cache=embedding_cache)
    summary = []
    for cfg in configs:
        sae = train_sae(acts, out / f"k{cfg.k}", cfg, tcfg)
        info = sae.manifest.extra.get("training", {})
        summary.append({"k": cfg.k, "width": cfg.width, "sae": str(out / f"k{cfg.k}" / "sae"),
                        **info})
        typer.echo(f"k={cfg.k}: {out / f'k{cfg.k}' / 'sae'}", err=True)
    if json_out:
        echo_json({"rows": len(acts), "saes": summary})


@sae_app.command("eval")
@friendly_errors
@checked(SAE_EVAL)
def eval_command(
    sae: Path = SAE_EVAL.cli("sae"),
    data: list[Path] = SAE_EVAL.cli("data"),
    out: Path = SAE_EVAL.cli("out"),
    model: str = SAE_EVAL.cli("model"),
    split: str = SAE_EVAL.cli("split"),
    max_docs: int = SAE_EVAL.cli("max_docs"),
    max_length: int = SAE_EVAL.cli("max_length"),
    embedding_cache: Path = SAE_EVAL.cli("embedding_cache"),
    json_out: bool = SAE_EVAL.cli("json_out"),
) -> None:
    """nDCG@10 and R@100 with original vs reconstructed vectors, FVU, L0, dead share."""
    import pandas as pd

    from irlens.sae import load_sae
    from irlens.sae.fidelity import evaluate_fidelity

    folders = _sae_folders(sae)
    datasets = _datasets(data, split, max_docs, None)
    retriever = _load(model, max_length)
    frames, rows = [], []
    queries = {}  # each dataset's queries are encoded once, for every SAE
    for folder in folders:
        one = load_sae(folder)
        for ds in datasets:
            if ds.name not in queries:
                queries[ds.name] = retriever.encode_queries(ds.query_texts())
            fid = evaluate_fidelity(retriever, one, ds, cache_dir=embedding_cache,
                                    query_vectors=queries[ds.name])
            fid.save(out / f"k{one.cfg.k}-{ds.name}")
            if seen := fid.overlap.get("queries_seen"):
                typer.echo(f"warning: {seen} of {len(ds.queries)} evaluated {ds.name} "
                           f"queries were in the training rows of {folder}: in-sample",
                           err=True)
            frames.append(fid.to_frame())
            rows.append({"k": one.cfg.k, "dataset": ds.name,
                         **{f"{s} {m}": v for s, ms in fid.scores.items()
                            for m, v in ms.items()},
                         "kept nDCG@10": fid.kept(), "fvu": fid.fvu, "l0": fid.l0,
                         "dead": fid.dead_share, "held out": fid.held_out,
                         "queries seen": fid.overlap.get("queries_seen"),
                         "docs seen": fid.overlap.get("docs_seen"),
                         "trained on": "; ".join(
                             f"{t['dataset']} ({t.get('docs')} docs + {t.get('queries')} "
                             f"{t.get('query_split')} queries)"
                             for t in one.manifest.extra.get("trained_on", []))})
            typer.echo(fid.summary(), err=True)
    table = pd.DataFrame(rows)
    write_table(out / "fidelity.csv", table)
    write_table(out / "fidelity.parquet", pd.concat(frames))
    if json_out:
        echo_json(rows)


@sae_app.command("explain")
@friendly_errors
@checked(SAE_EXPLAIN)
def explain_command(
    sae: Path = SAE_EXPLAIN.cli("sae"),
    data: list[Path] = SAE_EXPLAIN.cli("data"),
    out: Path = SAE_EXPLAIN.cli("out"),
    model: str = SAE_EXPLAIN.cli("model"),
    split: str = SAE_EXPLAIN.cli("split"),
    latents: int = SAE_EXPLAIN.cli("latents"),
    llm_url: str = SAE_EXPLAIN.cli("llm_url"),
    llm_model: str = SAE_EXPLAIN.cli("llm_model"),
    local_llm: bool = SAE_EXPLAIN.cli("local_llm"),
    llm_latents: int = SAE_EXPLAIN.cli("llm_latents"),
    max_docs: int = SAE_EXPLAIN.cli("max_docs"),
    max_length: int = SAE_EXPLAIN.cli("max_length"),
    embedding_cache: Path = SAE_EXPLAIN.cli("embedding_cache"),
    json_out: bool = SAE_EXPLAIN.cli("json_out"),
) -> None:
    """Concept dictionaries, interpretation confidence, explanations and their scores."""
    from irlens.sae import load_sae
    from irlens.sae.explain import explain_sae

    if llm_url and local_llm:
        raise IrlensError("pass --llm-url or --local-llm, not both")
    folders = _sae_folders(sae)
    if len(folders) != 1:
        raise IrlensError(f"{sae} holds {len(folders)} SAEs; pass one (e.g. {folders[0]})")
    llm = None
    if llm_url:
        from irlens.sae.llm import ChatEndpoint

        llm = ChatEndpoint(llm_url, llm_model)
    datasets = _datasets(data, split, max_docs, None)
    retriever = _load(model, max_length)
    if local_llm:
        from irlens.sae.llm import LocalGGUF

        llm = LocalGGUF()
    summary = explain_sae(retriever, load_sae(folders[0]), datasets, out, n_latents=latents,
                          llm=llm, llm_latents=llm_latents, cache_dir=embedding_cache)
    typer.echo(f"wrote {out / 'latents.html'}", err=True)
    if json_out:
        echo_json(summary)


@sae_app.command("steer")
@friendly_errors
@checked(SAE_STEER)
def steer_command(
    sae: Path = SAE_STEER.cli("sae"),
    data: list[Path] = SAE_STEER.cli("data"),
    out: Path = SAE_STEER.cli("out"),
    model: str = SAE_STEER.cli("model"),
    split: str = SAE_STEER.cli("split"),
    latents: str = SAE_STEER.cli("latents"),
    deltas: str = SAE_STEER.cli("deltas"),
    alpha: int = SAE_STEER.cli("alpha"),
    n_feedback: int = SAE_STEER.cli("n_feedback"),
    weighting: str = SAE_STEER.cli("weighting"),
    seed: int = SAE_STEER.cli("seed"),
    max_docs: int = SAE_STEER.cli("max_docs"),
    max_length: int = SAE_STEER.cli("max_length"),
    embedding_cache: Path = SAE_STEER.cli("embedding_cache"),
    json_out: bool = SAE_STEER.cli("json_out"),
) -> None:
    """PRF through latents vs unsteered and random latents; optional latent steering."""
    import pandas as pd

    from irlens.sae import load_sae
    from irlens.sae.steering import latent_steering, prf_steering

    weightings = [w.strip() for w in weighting.split(",") if w.strip()]
    folders = _sae_folders(sae)
    if len(folders) != 1:
        raise IrlensError(f"{sae} holds {len(folders)} SAEs; pass one (e.g. {folders[0]})")
    steps = _floats(deltas, "--deltas")
    chosen = _ints(latents, "--latents") if latents else []
    datasets = _datasets(data, split, max_docs, None)
    retriever = _load(model, max_length)
    one = load_sae(folders[0])
    frames = []
    for ds in datasets:
        prf = prf_steering(retriever, one, ds, n_feedback=n_feedback, alpha=alpha,
                           deltas=steps, seed=seed, cache_dir=embedding_cache,
                           weightings=weightings)
        prf.save(out / f"prf-{ds.name}")
        frames.append(prf.to_frame().assign(dataset=ds.name))
        if chosen:
            lat = latent_steering(retriever, one, ds, chosen, [0.0, *steps],
                                  cache_dir=embedding_cache)
            lat.save(out / f"latents-{ds.name}")
            frames.append(lat.to_frame().assign(dataset=ds.name))
    table = pd.concat(frames, ignore_index=True)
    write_table(out / "steering.csv", table)
    typer.echo(f"wrote {out / 'steering.csv'}", err=True)
    if json_out:
        echo_json(table.to_dict(orient="records"))
