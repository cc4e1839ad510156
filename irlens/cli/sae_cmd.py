"""``irlens sae train|eval|explain|steer``: thin commands over :mod:`irlens.sae`."""

from __future__ import annotations

from pathlib import Path

import typer

from irlens._io import write_table
from irlens.cli._app import app, echo_json, friendly_errors
from irlens.errors import IrlensError

sae_app = typer.Typer(help="Sparse autoencoders on a bi-encoder's vectors: train, measure "
                      "by retrieval, explain and steer.", no_args_is_help=True)
app.add_typer(sae_app, name="sae")

_MODEL = typer.Option("default", "--model", "-m", help="'default', a folder or a HF id.")
_DATA = typer.Option(..., "--data", "-d", help="BEIR folder; repeat the option.")
_SPLIT = typer.Option("test", help="Qrels split (its queries are used).")
_JSON = typer.Option(False, "--json", help="Print the summary as JSON on stdout.")
_MAX_LENGTH = typer.Option(None, help="Cut texts to this many tokens [default: the model's].")
_CACHE = typer.Option(None, "--embedding-cache", help="encode_corpus cache folder "
                      "[default: $IRLENS_CACHE_DIR or ~/.cache/irlens].")


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


def _input_width(model: str, hook: str | None) -> int | None:
    """The SAE's input width from the model's config alone (no weights): the vector size,
    or the FFN width for an ``ffn.pre``/``ffn.post`` hook; None when the config cannot be
    read this way (the loaded model is checked again before caching)."""
    from transformers import AutoConfig

    from irlens.models import resolve_model_path

    try:
        cfg = AutoConfig.from_pretrained(resolve_model_path(model))
        if hook is not None and hook.rsplit(".", 1)[-1] in ("pre", "post") and ".ffn." in hook:
            return int(cfg.intermediate_size)
        return int(cfg.hidden_size)
    except (OSError, ValueError, AttributeError):
        return None


@sae_app.command("train")
@friendly_errors
def train_command(
    data: list[Path] = _DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: cache/ and one run "
                             "folder per k (k64/sae is the SAE); a rerun resumes."),
    model: str = _MODEL,
    queries: str = typer.Option("train,dev", help="Qrels splits whose queries join the "
                                "documents as training rows (comma list, skipped where a "
                                "dataset lacks them; 'none': documents only). Test queries "
                                "(and train queries with a test query's text) stay held "
                                "out unless 'test' is named; the SAE's manifest records "
                                "what it was trained on."),
    k: str = typer.Option("64", help="Active latents; comma list trains one SAE per k."),
    expansion: int = typer.Option(16, help="Latents per input dimension."),
    batch_topk: bool = typer.Option(False, help="BatchTopK instead of TopK."),
    auxk_alpha: float = typer.Option(1 / 32, help="AuxK weight (0: off)."),
    rank_kl: float = typer.Option(0.0, help="Kang et al.'s ranking KL weight (0: off)."),
    hook: str = typer.Option(None, help="A hook point (token rows) instead of pooled vectors."),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(512),
    lr: float = typer.Option(None, help="Adam learning rate [default: sparsify's rule]."),
    seed: int = typer.Option(0),
    balance: bool = typer.Option(False, help="Sample every dataset equally often, not in "
                                 "proportion to its size."),
    max_docs: int = typer.Option(None, help="Keep at most this many documents per dataset."),
    max_queries: int = typer.Option(None),
    max_length: int = _MAX_LENGTH,
    embedding_cache: Path = _CACHE,
    json_out: bool = _JSON,
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

    if (dim := _input_width(model, hook)) is not None:
        sae_configs(dim)  # a k larger than the width fails here, before the weights load
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
def eval_command(
    sae: Path = typer.Option(..., "--sae", help="SAE folder or irlens sae train --out."),
    data: list[Path] = _DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    model: str = _MODEL,
    split: str = _SPLIT,
    max_docs: int = typer.Option(None),
    max_length: int = _MAX_LENGTH,
    embedding_cache: Path = _CACHE,
    json_out: bool = _JSON,
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
def explain_command(
    sae: Path = typer.Option(..., "--sae", help="An SAE folder (e.g. out/k64/sae)."),
    data: list[Path] = _DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (dictionary, scores, "
                             "latents.html, llm-cache)."),
    model: str = _MODEL,
    split: str = _SPLIT,
    latents: int = typer.Option(100, help="Latents to describe (spread over frequencies)."),
    llm_url: str = typer.Option(None, help="OpenAI-compatible base URL (…/v1)."),
    llm_model: str = typer.Option("default", help="Model name sent to --llm-url."),
    local_llm: bool = typer.Option(False, help="Explain with the offline Gemma 3 270M GGUF."),
    llm_latents: int = typer.Option(20, help="Latents the LLM explains."),
    max_docs: int = typer.Option(None),
    max_length: int = _MAX_LENGTH,
    embedding_cache: Path = _CACHE,
    json_out: bool = _JSON,
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
def steer_command(
    sae: Path = typer.Option(..., "--sae", help="An SAE folder (e.g. out/k64/sae)."),
    data: list[Path] = _DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    model: str = _MODEL,
    split: str = _SPLIT,
    latents: str = typer.Option(None, help="Latents to steer towards (comma list); default: "
                                "none (PRF only)."),
    deltas: str = typer.Option("0.04,0.08,0.16,0.32", help="Steering strengths."),
    alpha: int = typer.Option(5, help="PRF: latents taken from the feedback documents."),
    n_feedback: int = typer.Option(10, help="PRF: feedback documents per query."),
    weighting: str = typer.Option("mass,idf", help="PRF: how feedback latents are chosen: "
                                  "mass (summed activation, Kang et al.) and/or idf "
                                  "(times log(N/df))."),
    seed: int = typer.Option(0),
    max_docs: int = typer.Option(None),
    max_length: int = _MAX_LENGTH,
    embedding_cache: Path = _CACHE,
    json_out: bool = _JSON,
) -> None:
    """PRF through latents vs unsteered and random latents; optional latent steering."""
    import pandas as pd

    from irlens.sae import load_sae
    from irlens.sae.steering import WEIGHTINGS, latent_steering, prf_steering

    weightings = [w.strip() for w in weighting.split(",") if w.strip()]
    if not weightings or set(weightings) - set(WEIGHTINGS):
        raise IrlensError(f"--weighting '{weighting}' is not a list of {' and '.join(WEIGHTINGS)}"
                          "; e.g. --weighting mass,idf")
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
