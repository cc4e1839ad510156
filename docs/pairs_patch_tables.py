"""Markdown tables of an ``irlens patch`` output folder (study + ablate-top.csv).

    python docs/pairs_patch_tables.py /work/results/pairs2/patch-scifact-tfc1 [--top 6]

Prints: pairs used and skipped, the share where the axiom holds, the top components by
denoising with their noising effect (mean ± 95% t interval over pairs), the residual
stream by token role at each layer, and the ``--ablate-top`` table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from irlens.patching.patch import ROLES
from irlens.patching.study import PatchingStudy


def _name(c: dict) -> str:
    return f"layer {c['layer']} " + ("FFN" if c["head"] is None else f"head {c['head']}")


def tables(folder: Path, top: int) -> str:
    s = PatchingStudy.load(folder / "study")
    skipped = ", ".join(f"{v} {k}" for k, v in s.skipped.items()) or "none"
    out = [f"**{folder.name}**: {s.n_pairs} pairs used (skipped: {skipped}); the axiom "
           f"holds in {s.axiom_holds:.0%}, mean clean - corrupted {s.mean_delta:+.4f}.", "",
           "| component | denoising (1 = restores all) | noising (1 = not needed) |",
           "|---|---:|---:|"]
    noise = {c["component"]: c for c in s.top_components(10**6, "noise")}
    for c in s.top_components(top, "denoise"):
        n = noise[c["component"]]
        out.append(f"| {_name(c)} | {c['effect']:.2f} ± {c['ci']:.2f} "
                   f"| {n['effect']:.2f} ± {n['ci']:.2f} |")
    low = sorted(s.top_components(10**6, "denoise"), key=lambda c: c["effect"])[:3]
    out += ["", "Most negative denoising (patching the clean activation moves the score "
            "further from clean): " + "; ".join(f"{_name(c)} {c['effect']:.2f} ± {c['ci']:.2f}"
                                               for c in low) + "."]
    out += ["", "Residual stream, denoising by token role (mean ± 95% CI; rows = layers):", "",
            "| layer | " + " | ".join(ROLES) + " |", "|---:|" + "---:|" * len(ROLES)]
    for li in range(s.roles_mean.shape[1]):
        cells = [("-" if np.isnan(m) else f"{m:.2f} ± {h:.2f}")
                 for m, h in zip(s.roles_mean[0, li], s.roles_ci[0, li], strict=True)]
        out.append(f"| {li} | " + " | ".join(cells) + " |")
    ablate = folder / "ablate-top.csv"
    if ablate.is_file():
        t = pd.read_csv(ablate).fillna("")
        out += ["", f"Ablate-top ({int(t['pairs'].iloc[0])} held-out pairs):", "",
                "| ablated | components | TFC1 holds | mean clean - corrupted | nDCG@10 |",
                "|---|---|---:|---:|---:|"]
        for r in t.rename(columns={"nDCG@10": "ndcg"}).itertuples():
            out.append(f"| {r.condition} | {r.components} | {r.axiom_holds:.0%} "
                       f"| {r.mean_delta:.4f} | {r.ndcg:.3f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=6)
    a = parser.parse_args()
    for folder in a.folders:
        print(tables(folder, a.top))


if __name__ == "__main__":
    main()
