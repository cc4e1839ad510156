"""The real-data SAE study behind docs/sae.md (default model, scifact + nfcorpus).

Phases (each resumable; results in $SAE_RESULTS, default /work/results/sae/real):

    python docs/sae_real.py cache      # document + test-query vectors -> activation cache
    python docs/sae_real.py train 64   # one SAE per k (run the four k in parallel)
    python docs/sae_real.py eval       # fidelity table
    python docs/sae_real.py explain    # dictionaries, scores, browser (k=64)
    python docs/sae_real.py steer      # PRF and latent steering (k=64)

Document vectors come from irlens's encode_corpus cache ($IRLENS_CACHE_DIR); on this shared
2-core machine nfcorpus may not be fully encoded in time, so ``cache`` also takes the
documents encoded so far from encode_corpus's partial chunks (same vectors, same order).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

from irlens import load_model  # noqa: E402
from irlens.data import load_dataset  # noqa: E402
from irlens.sae import Activations, SAEConfig, TrainConfig, cache_array, load_sae, train_sae  # noqa: E402,E501
from irlens.sae.cache import _embedding_file  # noqa: E402

DATA = Path("/work/shared/data")
R = Path(os.environ.get("SAE_RESULTS", "/work/results/sae/real"))
CACHE = os.environ.get("IRLENS_CACHE_DIR", "/work/results/sae/cache")
NAMES = ["scifact", "nfcorpus"]


def doc_vectors(model, ds):
    """All vectors if encoded, else those of the documents encoded so far (partial chunks)."""
    final = _embedding_file(model, ds, CACHE)
    if final.is_file():
        return ds.doc_ids, np.load(final), True
    parts = final.parent / "partial-512"
    texts = ds.doc_texts()
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    ids, vecs = [], []
    for f in sorted(parts.glob("*.npy")):
        start = int(f.stem)
        v = np.load(f)
        ids += [ds.doc_ids[i] for i in order[start:start + len(v)]]
        vecs.append(v)
    return ids, np.concatenate(vecs), False


def queries(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(R / f"queries-{name}.npy"))


def encoded_subsets(model) -> dict:
    """Each dataset as is when fully encoded; else its test queries over the documents
    encoded so far (judged documents not encoded count as relevant but unretrievable, as
    BEIR counts judged documents missing from a corpus), with their vectors written to the
    encode_corpus cache under the subset's own fingerprint."""
    from irlens._io import write_json
    from irlens.data import Dataset

    out = {}
    for n in NAMES:
        ds = load_dataset(DATA / n)
        ids, vecs, full = doc_vectors(model, ds)
        if full:
            out[n] = ds
            print(n, "all", len(ds.corpus), "documents", flush=True)
            continue
        have = dict(zip(ids, vecs, strict=True))
        keep = [d for d in ds.doc_ids if d in have]
        sub = Dataset(name=n, corpus={d: ds.corpus[d] for d in keep}, queries=ds.queries,
                      qrels=ds.qrels, split=ds.split, source=ds.source)
        path = _embedding_file(model, sub, CACHE)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.stack([have[d] for d in keep]).astype(np.float32))
            write_json(path.parent / "manifest.json", {"subset_of": n, "docs": len(keep),
                                                        "full": len(ds.corpus)})
        judged = {d for q in ds.qrels.values() for d in q}
        out[n] = sub
        print(n, f"{len(keep)} of {len(ds.corpus)} documents; {len(judged - set(keep))} "
              f"of {len(judged)} judged documents not encoded", flush=True)
    return out


def main() -> None:
    import pickle

    phase = sys.argv[1]
    model = load_model("default")
    if phase == "subsets":
        R.mkdir(parents=True, exist_ok=True)
        (R / "sets.pkl").write_bytes(pickle.dumps(encoded_subsets(model)))
        return
    sets = pickle.loads((R / "sets.pkl").read_bytes())
    if phase == "cache":
        xs, ids, info = [], [], {}
        for n, ds in sets.items():
            d_ids, d_vecs, full = doc_vectors(model, ds)
            q = model.encode_queries(ds.query_texts(), batch_size=32).numpy()
            R.mkdir(parents=True, exist_ok=True)
            np.save(R / f"queries-{n}.npy", q)
            xs += [d_vecs, q]
            ids += [f"{n}/doc/{i}" for i in d_ids] + [f"{n}/query/{i}" for i in ds.query_ids]
            info[n] = {"docs": len(d_ids), "of": len(ds.corpus), "queries": len(q)}
        acts = cache_array(np.concatenate(xs), R / "cache", source="scifact+nfcorpus", ids=ids,
                           model=model)
        print(json.dumps({"rows": len(acts), **info}))
    elif phase == "train":
        k = int(sys.argv[2])
        acts = Activations(R / "cache")
        acts.check_model(model)
        sae = train_sae(acts, R / f"k{k}", SAEConfig(d_in=acts.dim, expansion_factor=8, k=k),
                        TrainConfig(epochs=int(os.environ.get("EPOCHS", 8)), batch_size=256,
                                    lr=float(os.environ.get("LR", 1e-3))))
        print(json.dumps(sae.manifest.extra.get("training", {})))
    elif phase == "eval":
        from irlens.sae.fidelity import Fidelity, evaluate_fidelity

        rows = []
        for k in (16, 32, 64, 128):
            if not (R / f"k{k}" / "sae" / "cfg.json").is_file():
                continue
            sae = load_sae(R / f"k{k}" / "sae")
            for n, ds in sets.items():
                if not _embedding_file(model, ds, CACHE).is_file():
                    continue
                path = R / "eval" / f"k{k}-{n}"
                fid = Fidelity.load(path) if (path / "manifest.json").is_file() else \
                    evaluate_fidelity(model, sae, ds, cache_dir=CACHE, progress=False,
                                      query_vectors=queries(n))
                fid.save(path)
                rows.append({"k": k, "dataset": n, **{f"{s} {m}": v for s, ms in
                                                      fid.scores.items() for m, v in ms.items()},
                             "kept": fid.kept(), "fvu": fid.fvu, "l0": fid.l0,
                             "dead": fid.dead_share})
                print(json.dumps(rows[-1]), flush=True)
        (R / "fidelity.json").write_text(json.dumps(rows, indent=2))
    elif phase == "explain":
        from irlens.sae.explain import explain_sae

        llm = None
        if len(sys.argv) > 2 and sys.argv[2] == "llm":
            from irlens.sae.llm import LocalGGUF

            llm = LocalGGUF()
        full = [ds for ds in sets.values() if _embedding_file(model, ds, CACHE).is_file()]
        summary = explain_sae(model, load_sae(R / "k64" / "sae"), full, R / "explain",
                              n_latents=100, llm=llm,
                              llm_latents=int(os.environ.get("LLM_LATENTS", 20)),
                              n_detect=int(os.environ.get("N_DETECT", 3)), cache_dir=CACHE)
        print(json.dumps(summary, indent=2))
    elif phase == "steer":
        import pandas as pd

        from irlens.sae.dictionary import LatentDictionary
        from irlens.sae.steering import latent_steering, prf_steering

        sae = load_sae(R / "k64" / "sae")
        frames = []
        dictionary = LatentDictionary.load(R / "explain" / "dictionary")
        latents = dictionary.latents[::20][:5]
        for n, ds in sets.items():
            if not _embedding_file(model, ds, CACHE).is_file():
                continue
            frames.append(prf_steering(model, sae, ds, cache_dir=CACHE,
                                       query_vectors=queries(n)).to_frame().assign(dataset=n))
            frames.append(latent_steering(model, sae, ds, latents, (0.0, 0.1, 0.2, 0.4),
                                          cache_dir=CACHE, query_vectors=queries(n))
                          .to_frame().assign(dataset=n))
        table = pd.concat(frames, ignore_index=True)
        table.to_csv(R / "steering.csv", index=False)
        print(table.to_string())


if __name__ == "__main__":
    main()
