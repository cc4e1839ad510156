"""Explanations of latents, and the scorers that test them (EleutherAI's automatic
interpretation, Paulo et al. 2024, "Automatically Interpreting Millions of Features in
Large Language Models"; the ``delphi`` project).

- :func:`explain_latents`: few-shot prompts with a latent's top documents; an LLM answers
  with a short phrase.
- :func:`embedding_scores`: the explanation is a *query* to the retriever itself, over
  held-out documents that activate the latent and documents that do not; the AUROC
  (scikit-learn) says how well it picks out the activating ones. No LLM needed, so it
  scores keyword explanations too, next to a shuffled-explanation control.
- :func:`detection_scores`: an LLM reads the explanation and one held-out document at a
  time and answers yes/no; balanced accuracy (scikit-learn).
- :func:`detection_margin_scores`: the same prompts, scored by the judge's next-token
  margin ``log P(" yes") - log P(" no")`` (one forward, no generation): the AUROC of the
  margin over firing vs quiet documents, and a balanced accuracy whose threshold never
  sees the labels (yes when the margin is above the median of that latent's prompts,
  which holds as many firing as quiet documents by design). With ``baseline`` (a
  content-free concept such as "N/A"), also the same two scores of the *calibrated*
  margin, the margin minus that document's margin under the baseline concept (contextual
  calibration, Zhao et al. 2021, "Calibrate Before Use"), which removes how "yes-like" a
  document reads whatever the concept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from irlens.errors import IrlensError

__all__ = ["detection_margin_scores", "detection_prompt", "detection_scores",
           "embedding_scores", "explain_latents", "held_out_examples", "shuffled"]

FEW_SHOT = (
    "Each list shows texts that share one concept. Name the concept in a few words.\n\n"
    "Texts:\n- Insulin resistance in type 2 diabetes patients\n- Blood glucose control "
    "with metformin\n- HbA1c levels after dietary change\nConcept: diabetes and blood "
    "sugar\n\n"
    "Texts:\n- The striker scored twice in the final\n- Fans filled the stadium for the "
    "derby\n- The coach was sacked after five defeats\nConcept: football matches\n\n"
)


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + "..."


def explain_prompt(texts: Sequence[str], chars: int = 120) -> str:
    """The few-shot prompt for one latent's top texts."""
    lines = "\n".join(f"- {_clip(t, chars)}" for t in texts)
    return f"{FEW_SHOT}Texts:\n{lines}\nConcept:"


def _first_line(answer: str) -> str:
    line = answer.strip().split("\n", 1)[0].strip().strip(".").strip()
    return line[:120]


def explain_latents(llm, examples: Mapping[int, Sequence[str]], *, n_examples: int = 4,
                    max_new_tokens: int = 20, progress: bool = True) -> dict[int, str]:
    """An explanation per latent from its top texts (``examples[latent]``)."""
    from tqdm.auto import tqdm

    out = {}
    for latent, texts in tqdm(examples.items(), desc="explain", disable=not progress):
        if not texts:
            out[latent] = ""
            continue
        answer = llm.complete(explain_prompt(list(texts)[:n_examples]), max_new_tokens)
        out[latent] = _first_line(answer)
    return out


def held_out_examples(z_col: np.ndarray, rows: np.ndarray, n: int, seed: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` held-out rows where the latent fires and ``n`` where it does not."""
    rng = np.random.default_rng(seed)
    fires = rows[z_col[rows] > 0]
    quiet = rows[z_col[rows] <= 0]
    pos = rng.choice(fires, min(n, len(fires)), replace=False) if len(fires) else fires
    neg = rng.choice(quiet, min(n, len(quiet)), replace=False) if len(quiet) else quiet
    return pos, neg


def embedding_scores(model, explanations: Mapping[int, str], z, doc_vectors: torch.Tensor,
                     rows: np.ndarray, *, n: int = 20, seed: int = 0) -> dict[int, float]:
    """AUROC of each explanation, used as a query, at ranking held-out ``rows`` that fire
    (``z`` [docs, width], sparse or dense) above rows that do not; NaN when either side
    is empty or the explanation is blank."""
    from sklearn.metrics import roc_auc_score

    latents = [j for j, text in explanations.items() if text.strip()]
    out = {j: float("nan") for j in explanations}
    if not latents:
        return out
    queries = model.encode_queries([explanations[j] for j in latents])
    for q, j in zip(queries, latents, strict=True):
        col = _column(z, j)
        pos, neg = held_out_examples(col, rows, n, seed + j)
        if not len(pos) or not len(neg):
            continue
        sims = model.similarity(q[None], doc_vectors[np.concatenate([pos, neg])])[0]
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        out[j] = float(roc_auc_score(labels, sims.numpy()))
    return out


DETECT = ("Concept: {concept}\nText: {text}\nDoes the text match the concept? Answer yes or "
          "no.\nAnswer:")
DETECT_SHOTS = ("Concept: football matches\nText: The striker scored twice in the final.\n"
                "Does the text match the concept? Answer yes or no.\nAnswer: yes\n\n"
                "Concept: football matches\nText: Insulin lowers blood glucose.\n"
                "Does the text match the concept? Answer yes or no.\nAnswer: no\n\n")


def detection_prompt(concept: str, text: str, chars: int = 200) -> str:
    """The few-shot yes/no prompt for one (explanation, document)."""
    return DETECT_SHOTS + DETECT.format(concept=concept, text=_clip(text, chars))


def detection_margin_scores(llm, explanations: Mapping[int, str], z, doc_texts: Sequence[str],
                            rows: np.ndarray, *, n: int = 5, seed: int = 0, chars: int = 200,
                            baseline: str | None = None,
                            progress: bool = True) -> dict[int, dict[str, float]]:
    """Per latent, from ``llm.judge`` on ``n`` firing and ``n`` quiet held-out documents:
    ``auroc`` of the yes/no margin, ``balanced_accuracy`` with yes = margin above the
    latent's median margin (label-free), ``answer_accuracy`` (balanced accuracy of the
    greedy next token being "yes") and ``yes_share`` (how often the greedy token is
    "yes"); with ``baseline``, ``auroc_calibrated`` and ``balanced_accuracy_calibrated``
    of the margin minus the baseline concept's margin on the same document. NaN when a
    side is empty or the explanation is blank."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from tqdm.auto import tqdm

    keys = ["auroc", "balanced_accuracy", "answer_accuracy", "yes_share"]
    if baseline is not None:
        keys += ["auroc_calibrated", "balanced_accuracy_calibrated"]
    nan = dict.fromkeys(keys, float("nan"))
    out = {}
    for j, concept in tqdm(explanations.items(), desc="detect (margin)", disable=not progress):
        pos, neg = held_out_examples(_column(z, j), rows, n, seed + j)
        if not concept.strip() or not len(pos) or not len(neg):
            out[j] = dict(nan)
            continue
        docs = np.concatenate([pos, neg])
        verdicts = [llm.judge(detection_prompt(concept, doc_texts[i], chars)) for i in docs]
        margin = np.array([v["margin"] for v in verdicts])
        said_yes = np.array([v["answer"].strip().lower().startswith("yes") for v in verdicts])
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(bool)
        out[j] = {"auroc": float(roc_auc_score(labels, margin)),
                  "balanced_accuracy": float(balanced_accuracy_score(
                      labels, margin > np.median(margin))),
                  "answer_accuracy": float(balanced_accuracy_score(labels, said_yes)),
                  "yes_share": float(said_yes.mean())}
        if baseline is not None:
            calibrated = margin - np.array([llm.judge(detection_prompt(
                baseline, doc_texts[i], chars))["margin"] for i in docs])
            out[j]["auroc_calibrated"] = float(roc_auc_score(labels, calibrated))
            out[j]["balanced_accuracy_calibrated"] = float(balanced_accuracy_score(
                labels, calibrated > np.median(calibrated)))
    return out


def detection_scores(llm, explanations: Mapping[int, str], z, doc_texts: Sequence[str],
                     rows: np.ndarray, *, n: int = 5, seed: int = 0, chars: int = 200,
                     progress: bool = True) -> dict[int, float]:
    """Balanced accuracy of the LLM's yes/no labels of ``n`` firing and ``n`` quiet
    held-out documents per latent, given the explanation (NaN when a side is empty)."""
    from sklearn.metrics import balanced_accuracy_score
    from tqdm.auto import tqdm

    out = {}
    for j, concept in tqdm(explanations.items(), desc="detect", disable=not progress):
        pos, neg = held_out_examples(_column(z, j), rows, n, seed + j)
        if not concept.strip() or not len(pos) or not len(neg):
            out[j] = float("nan")
            continue
        preds = []
        for i in np.concatenate([pos, neg]):
            prompt = detection_prompt(concept, doc_texts[i], chars)
            answer = llm.complete(prompt, max_new_tokens=2).strip().lower()
            preds.append(answer.startswith("yes"))
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(bool)
        out[j] = float(balanced_accuracy_score(labels, preds))
    return out


def shuffled(explanations: Mapping[int, str], seed: int = 0) -> dict[int, str]:
    """The same explanations, each given to another latent (a derangement): the control."""
    keys = list(explanations)
    if len(keys) < 2:
        raise IrlensError("a shuffled control needs at least two explanations")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(keys))
    while (perm == np.arange(len(keys))).any():
        perm = rng.permutation(len(keys))
    return {keys[i]: explanations[keys[p]] for i, p in enumerate(perm)}


def _column(z, j: int) -> np.ndarray:
    if hasattr(z, "getcol"):
        return z.getcol(j).toarray().ravel()
    col = z[:, j]
    return col.numpy() if hasattr(col, "numpy") else np.asarray(col)
