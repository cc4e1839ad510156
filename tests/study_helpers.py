"""Tiny studies for the study and Ray tests: a BEIR folder with enough relevant pairs and
BM25 negatives, a tiny bi-encoder, and a config writer."""

from __future__ import annotations

import json
from pathlib import Path

from tiny import tiny_model_dir

TOPICS = {
    "cats": "cats are small carnivores that hunt mice and sleep all day",
    "dogs": "dogs are loyal animals that guard houses and chase balls",
    "salmon": "salmon swim upstream to spawn in cold mountain rivers",
    "stocks": "the stock market fell sharply after the bank raised rates",
    "rain": "heavy rain and strong wind flood the coastal towns tomorrow",
    "bread": "bakers knead dough and bake bread in hot stone ovens",
    "chess": "chess players plan openings and sacrifice pawns for position",
    "volcano": "the volcano erupted and ash covered the villages nearby",
}


def write_data(folder: Path) -> Path:
    """Sixteen documents (two per topic), eight queries, each with one relevant doc."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs, qrels, queries = [], [], []
    for i, (topic, text) in enumerate(TOPICS.items()):
        docs.append({"_id": f"d{i}a", "title": topic, "text": text})
        docs.append({"_id": f"d{i}b", "title": "", "text": f"a note on {topic} and the town "
                     "market"})
        queries.append({"_id": f"q{i}", "text": f"what about {topic} {text.split()[3]}"})
        qrels.append(f"q{i}\td{i}a\t1")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "\n".join(qrels) + "\n")
    return folder


SECTIONS = """\
sections:
  evaluate:
    chunk_size: {chunk}
    metrics: [nDCG@10, RR@10]
  faithfulness:
    pairs: 4
    group_size: {group}
    n_steps: {steps}
    methods: [ig-mask, gxi]
    n_candidates: 5
  neurons:
    triplets: 4
    shard_size: 2
    n_steps: 3
    keep: all
  prune:
    p: [10.0]
    seeds: 2
    depth: 8
"""


def write_study(root: Path, name: str = "tiny", *, chunk: int = 4, group: int = 2,
                steps: int = 2, sections: str | None = None, title: str = "tiny") -> Path:
    """A study config over the tiny model and data; returns its path."""
    root = Path(root)
    model = tiny_model_dir(root / "models", "bert", "bi")
    data = write_data(root / "data")
    text = (f"name: {json.dumps(title)}\nmodel: {model}\ndevice: cpu\nseed: 0\n"
            f"batch_size: 8\ndatasets:\n  tiny:\n    path: {data}\n")
    text += (sections or SECTIONS).format(chunk=chunk, group=group, steps=steps)
    path = root / f"{name}.yaml"
    path.write_text(text)
    return path
