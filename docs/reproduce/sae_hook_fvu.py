"""FVU of an SAE trained on a hook point's token rows, on the tokens of documents it never
saw: python docs/reproduce/sae_hook_fvu.py SAE_FOLDER HOOK BEIR_FOLDER FIRST LAST OUT.json
(documents FIRST..LAST-1 of the folder's corpus file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from irlens.data import Dataset, load_dataset
from irlens.models import load_model
from irlens.sae import cache_activations, load_sae
from irlens.sae.fidelity import reconstruction_stats


def main(sae_dir: str, hook: str, folder: str, first: int, last: int, out: str) -> None:
    data = load_dataset(folder)
    docs = dict(list(data.corpus.items())[first:last])
    held = Dataset(name=f"{data.name}-{first}-{last}", corpus=docs, queries={}, qrels={})
    model = load_model("default")
    sae = load_sae(sae_dir)
    acts = cache_activations(model, [held], Path(out).with_suffix(".cache"), hook=hook,
                             sides=["doc"])
    x = torch.from_numpy(__import__("numpy").concatenate(list(acts.shards())))
    _, fvu, l0, fired = reconstruction_stats(sae, x)
    result = {"hook": hook, "documents": len(docs), "token_rows": len(x), "fvu": fvu,
              "l0": l0, "dead_share": float((fired == 0).mean()), "d_in": sae.cfg.d_in,
              "width": sae.width, "k": sae.cfg.k,
              "training": sae.manifest.extra.get("training", {})}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5])
