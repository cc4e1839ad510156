"""Issue 20 §1: every command refuses every bad option in one line, before any model
loads and before anything is written to --out; the corrected command then runs in the
same --out. The model loaders are replaced by a guard that fails the test if called."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tiny import tiny_model_dir
from tiny_data import write_beir
from typer.testing import CliRunner

from irlens.cli import app
from irlens.options import analysis, attribution, neurons, retrieval, sae

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

# Valid options of each command; a row's bad options come after them (the last wins).
BASE = {
    "evaluate": "--model {bi} --data {data} --device cpu --out {out} --cache-dir {cache}",
    "hooks": "",
    "train bi-encoder": "--base {bi} --data {data} --out {out} --device cpu --batch-size 2",
    "train cross-encoder": "--data {triples} --base {bi} --out {out} --device cpu "
                           "--eval-data {data} --eval-depth 5 --batch-size 4 --max-length 32",
    "explain": "'what do cats eat' 'cats eat mice' --model {bi} --device cpu --out {out}",
    "faithfulness": "--model {bi} --data {data} --device cpu --out {out} --methods gxi,random",
    "neurons": "--model {bi} --data {data} --device cpu --out {out}",
    "prune": "--neurons {neurons} --data {data} --device cpu --out {out}",
    "activations": "--model {bi} --model {bi2} --data {data} --device cpu --out {out}",
    "edit": "--model {bi} --data {wide} --out {out}",
    "patch": "--model {bi} --data {data} --out {out}",
    "probe": "--model {bi} --model {bi2} --data {wide} --device cpu --out {out}",
    "study": "{tmp}/study.yaml",
    "sae train": "--data {data} --model {bi} --out {out}",
    "sae eval": "--sae {sae} --data {data} --model {bi} --out {out}",
    "sae explain": "--sae {sae} --data {wide} --model {bi} --out {out}",
    "sae steer": "--sae {sae} --data {data} --model {bi} --out {out}",
}
# The same command with small sizes: it must succeed in the --out the bad rows left.
GOOD = {
    "evaluate": "--k 5",
    "hooks": "{bi}",
    "train bi-encoder": "--split test --eval-split none --epochs 1 --max-seq-length 32",
    "train cross-encoder": "",
    "explain": "--steps 4",
    "faithfulness": "--pairs 2 --n-steps 2 --candidates 3",
    "neurons": "--triplets 2 --steps 3 --shard-size 2 --max-length 32",
    "prune": "--p 10 --seeds 1 --layer-p 0 --pool bm25 --depth 3",
    "activations": "--examples 2 --steps 2 --shard-size 2 --max-length 32",
    "edit": "--n 1 --steps 2 --max-length 32",
    "patch": "--pairs 3 --min-delta 0",
    "probe": "--queries 0 --folds 2 --candidates 2 --max-length 32",
    "study": "--init",
    "sae train": "--k 4 --expansion 2 --epochs 1 --batch-size 4",
    "sae eval": "",
    "sae explain": "--latents 4 --llm-latents 0",
    "sae steer": "--alpha 2 --latents 1 --deltas 0.1",
}
# One row per bad option: (command, bad options, what the one line must say).
ROWS = [
    ("evaluate", "--model ./no-such-model", r"model path ./no-such-model does not exist"),
    ("evaluate", "--metrics nDCG@ten", r"unknown metric"),
    ("evaluate", "--k 0", r"--k must be >= 1, got 0"),
    ("evaluate", "--batch-size 0", r"--batch-size must be >= 1, got 0"),
    ("evaluate", "--device gpu", r"--device must be auto, cpu or cuda, got 'gpu'"),
    ("evaluate", "--dtype float8", r"--dtype must be one of float32, bfloat16"),
    ("evaluate", "--max-docs -5", r"--max-docs must be >= 1, got -5; .*leave it out"),
    ("evaluate", "--max-queries -1", r"--max-queries must be >= 1, got -1"),
    ("evaluate", "--max-queries 0", r"--max-queries must be >= 1, got 0"),
    ("evaluate", "--workers 0", r"--workers must be >= 1, got 0"),
    ("hooks", "./no-such-model", r"model path ./no-such-model does not exist"),
    ("hooks", "{bi} --side both", r"--side must be one of query, doc, got 'both'"),
    ("train bi-encoder", "--base ./no-such-model", r"model path ./no-such-model does not"),
    ("train bi-encoder", "--data {tmp}/missing", r"missing does not exist; pass a BEIR"),
    ("train bi-encoder", "--pooling max", r"--pooling must be one of cls, mean, got 'max'"),
    ("train bi-encoder", "--hard-negatives -1", r"--hard-negatives must be >= 0"),
    ("train bi-encoder", "--bm25-depth 0", r"--bm25-depth must be >= 1"),
    ("train bi-encoder", "--max-queries 0", r"--max-queries must be >= 1"),
    ("train bi-encoder", "--epochs 0", r"--epochs must be >= 1"),
    ("train bi-encoder", "--batch-size 1", r"--batch-size must be >= 2.*in-batch negatives"),
    ("train bi-encoder", "--mini-batch-size 0", r"--mini-batch-size must be >= 1"),
    ("train bi-encoder", "--lr 0", r"--lr must be > 0, got 0"),
    ("train bi-encoder", "--max-seq-length 0", r"--max-seq-length must be >= 8"),
    ("train bi-encoder", "--eval-max-queries 0", r"--eval-max-queries must be >= 1"),
    ("train bi-encoder", "--eval-max-docs 0", r"--eval-max-docs must be >= 1"),
    ("train bi-encoder", "--eval-max-length 0", r"--eval-max-length must be >= 8"),
    ("train bi-encoder", "--seed -1", r"--seed must be >= 0"),
    ("train bi-encoder", "--save-steps 0", r"--save-steps must be >= 1"),
    ("train bi-encoder", "--device gpu", r"--device must be auto, cpu or cuda"),
    ("train bi-encoder", "--split test --eval-split test",
     r"--eval-split test is the training split too.*pass another --eval-split"),
    ("train bi-encoder", "--split train --eval-split dev",
     r"no 'dev' split .*its splits: test, train; pass --eval-split with one of them"),
    ("train cross-encoder", "--data {tmp}/missing.tsv", r"missing.tsv does not exist"),
    ("train cross-encoder", "--base ./no-such-model", r"model path ./no-such-model"),
    ("train cross-encoder", "--negatives 0", r"--negatives must be >= 1"),
    ("train cross-encoder", "--max-queries 0", r"--max-queries must be >= 1"),
    ("train cross-encoder", "--teacher-negatives -1", r"--teacher-negatives must be >= 0"),
    ("train cross-encoder", "--bm25-negatives -1", r"--bm25-negatives must be >= 0"),
    ("train cross-encoder", "--random-negatives -1", r"--random-negatives must be >= 0"),
    ("train cross-encoder", "--teacher bogus", r"unknown model 'bogus'"),
    ("train cross-encoder", "--teacher-scale 0", r"--teacher-scale must be > 0"),
    ("train cross-encoder", "--distillation kl", r"--distillation must be one of listwise"),
    ("train cross-encoder", "--epochs 0", r"--epochs must be >= 1"),
    ("train cross-encoder", "--batch-size 0", r"--batch-size must be >= 1"),
    ("train cross-encoder", "--lr -1", r"--lr must be > 0"),
    ("train cross-encoder", "--max-length 0", r"--max-length must be >= 8, got 0"),
    ("train cross-encoder", "--seed -1", r"--seed must be >= 0"),
    ("train cross-encoder", "--save-steps 0", r"--save-steps must be >= 1"),
    ("train cross-encoder", "--eval-depth 0", r"--eval-depth must be >= 1"),
    ("train cross-encoder", "--eval-queries 0", r"--eval-queries must be >= 1"),
    ("train cross-encoder", "--device tpu", r"--device must be auto, cpu or cuda"),
    ("explain", "--model ./no-such-model", r"model path ./no-such-model"),
    ("explain", "--method bogus", r"unknown .*bogus"),
    ("explain", "--steps 0", r"--steps must be >= 1"),
    ("explain", "--target all", r"--target must be one of query, doc, both"),
    ("explain", "--score raw", r"--score must be one of logit, prob"),
    ("explain", "--max-doc-tokens 0", r"--max-doc-tokens must be >= 1"),
    ("explain", "--memory-budget lots", r"memory budget 'lots' not understood"),
    ("explain", "--corpus-sample 0", r"--corpus-sample must be >= 1"),
    ("explain", "--device gpu", r"--device must be auto, cpu or cuda"),
    ("explain", "--top 0", r"--top must be >= 1"),
    ("faithfulness", "--model ./no-such-model", r"model path ./no-such-model"),
    ("faithfulness", "--data {tmp}/missing", r"missing does not exist"),
    ("faithfulness", "--pairs 0", r"--pairs must be >= 1"),
    ("faithfulness", "--methods ig,bogus", r"unknown .*bogus"),
    ("faithfulness", "--n-steps 0", r"--n-steps must be >= 1"),
    ("faithfulness", "--target all", r"--target must be one of"),
    ("faithfulness", "--max-doc-tokens 0", r"--max-doc-tokens must be >= 1"),
    ("faithfulness", "--top-k 2", r"--top-k must be in \(0, 1\], got 2"),
    ("faithfulness", "--candidates -1", r"--candidates must be >= 0"),
    ("faithfulness", "--scale 0", r"--scale must be > 0"),
    ("faithfulness", "--min-relevance -1", r"--min-relevance must be >= 0"),
    ("faithfulness", "--seed -1", r"--seed must be >= 0"),
    ("faithfulness", "--memory-budget 0GB", r"memory budget must be positive"),
    ("faithfulness", "--device gpu", r"--device must be"),
    ("faithfulness", "--workers 0", r"--workers must be >= 1"),
    ("neurons", "--model ./no-such-model", r"model path ./no-such-model"),
    ("neurons", "--data {tmp}/missing", r"missing does not exist"),
    ("neurons", "--ood {tmp}/missing", r"missing does not exist"),
    ("neurons", "--triplets 0", r"--triplets must be >= 1"),
    ("neurons", "--seed -1", r"--seed must be >= 0"),
    ("neurons", "--min-relevance -1", r"--min-relevance must be >= 0"),
    ("neurons", "--keep some", r"--keep must be one of ordered, classified, all"),
    ("neurons", "--shard-size 0", r"--shard-size must be >= 1"),
    ("neurons", "--max-length 4", r"--max-length must be >= 8"),
    ("neurons", "--steps 1", r"--steps must be >= 2.*NIG needs 2"),
    ("neurons", "--ffn mid", r"--ffn must be one of post, pre"),
    ("neurons", "--output score", r"--output must be one of prob, logit, similarity"),
    ("neurons", "--target all", r"--target must be one of both, query, doc"),
    ("neurons", "--baseline unk", r"unknown baseline 'unk'; use pad, mask, zero, text:"),
    ("neurons", "--rule simpson", r"unknown rule 'simpson'"),
    ("neurons", "--p 0", r"--p must be in \(0, 100\], got 0"),
    ("neurons", "--kind mlp", r"--kind must be one of ffn, attn"),
    ("neurons", "--score best", r"--score must be one of relevant, contrast, nonrelevant"),
    ("neurons", "--device gpu", r"--device must be"),
    ("neurons", "--memory-budget lots", r"memory budget 'lots'"),
    ("neurons", "--workers 0", r"--workers must be >= 1"),
    ("prune", "--data {tmp}/missing", r"missing does not exist"),
    ("prune", "--model ./no-such-model", r"model path ./no-such-model"),
    ("prune", "--p 0.5,200", r"--p item '200' must be in \(0, 100\]"),
    ("prune", "--p a,b", r"--p must be a comma-separated list of floats"),
    ("prune", "--seeds 0", r"--seeds must be >= 1, got 0"),
    ("prune", "--layer-p 101", r"--layer-p must be in \(0, 100\].*or 0 to skip"),
    ("prune", "--kind mlp", r"--kind must be one of ffn, attn"),
    ("prune", "--score best", r"--score must be one of"),
    ("prune", "--scope local", r"--scope must be one of global, layer"),
    ("prune", "--positions middle", r"--positions must be one of all, cls, query"),
    ("prune", "--how noise", r"--how must be one of zero, mean"),
    ("prune", "--random any", r"--random must be one of global, layer"),
    ("prune", "--metrics nDCG@ten", r"unknown metric"),
    ("prune", "--depth 0", r"--depth must be >= 1"),
    ("prune", "--pool all", r"--pool must be one of auto, full, judged\+bm25, bm25"),
    ("prune", "--max-length 0", r"--max-length must be >= 8"),
    ("prune", "--max-queries 0", r"--max-queries must be >= 1"),
    ("prune", "--batch-size 0", r"--batch-size must be >= 1"),
    ("prune", "--device gpu", r"--device must be"),
    ("prune", "--workers 0", r"--workers must be >= 1"),
    ("activations", "--model ./no-such-model", r"model path ./no-such-model"),
    ("activations", "--model {bi}", r"--model .*bert-bi-1-0 is given twice"),
    ("activations", "--data {tmp}/missing", r"missing does not exist"),
    ("activations", "--examples 1", r"--examples must be >= 2"),
    ("activations", "--steps 0", r"--steps must be >= 1"),
    ("activations", "--rule simpson", r"--rule must be one of riemann_right, gausslegendre"),
    ("activations", "--keys mid", r"--keys must be one of post, pre"),
    ("activations", "--sublayers keys,heads", r"--sublayers item 'heads' must be one of"),
    ("activations", "--sides ,", r"--sides is empty"),
    ("activations", "--target rank", r"--target must be one of relevance, norm"),
    ("activations", "--threshold 1.5", r"--threshold must be in"),
    ("activations", "--min-relevance -1", r"--min-relevance must be >= 0"),
    ("activations", "--seed -1", r"--seed must be >= 0"),
    ("activations", "--max-length 0", r"--max-length must be >= 8"),
    ("activations", "--shard-size 0", r"--shard-size must be >= 1"),
    ("activations", "--memory-budget lots", r"memory budget 'lots'"),
    ("activations", "--device gpu", r"--device must be"),
    ("edit", "--model ./no-such-model", r"model path ./no-such-model"),
    ("edit", "--data {tmp}/missing", r"missing does not exist"),
    ("edit", "--editor memit", r"--editor must be one of ft, rome, kn"),
    ("edit", "--kind swap", r"--kind must be one of insert, remove"),
    ("edit", "--n 0", r"--n must be >= 1"),
    ("edit", "--layer -1", r"--layer must be >= 0"),
    ("edit", "--layer 99", r"--layer 99 is out of range: .* has 2 layers \(layers 0-1\)"),
    ("edit", "--layer 2", r"--layer 2 is out of range: .*\(layers 0-1\)"),
    ("edit", "--steps -5", r"--steps must be >= 1, got -5"),
    ("edit", "--seed -1", r"--seed must be >= 0"),
    ("edit", "--max-length 0", r"--max-length must be >= 8"),
    ("edit", "--max-docs 0", r"--max-docs must be >= 1"),
    ("edit", "--max-queries 0", r"--max-queries must be >= 1"),
    ("edit", "--train-max-queries 0", r"--train-max-queries must be >= 1"),
    ("edit", "--device tpu", r"--device must be auto, cpu or cuda"),
    ("patch", "--model ./no-such-model", r"model path ./no-such-model"),
    ("patch", "--data {tmp}/missing", r"missing does not exist"),
    ("patch", "--axiom bogus", r"--axiom must be one of tfc1, tdc, lnc1, removal, got 'bogus'"),
    ("patch", "--pairs 0", r"--pairs must be >= 1, got 0"),
    ("patch", "--min-relevance -1", r"--min-relevance must be >= 0"),
    ("patch", "--max-doc-words -1", r"--max-doc-words must be >= 0"),
    ("patch", "--min-delta -1", r"--min-delta must be >= 0"),
    ("patch", "--ablate-top -1", r"--ablate-top must be >= 0"),
    ("patch", "--ablate-pairs 0", r"--ablate-pairs must be >= 1"),
    ("patch", "--resid bogus", r"--resid must be one of positions, roles, got 'bogus'"),
    ("patch", "--seed -1", r"--seed must be >= 0"),
    ("probe", "--model ./no-such-model", r"model path ./no-such-model"),
    ("probe", "--model {bi2}", r"--model .*bert-bi-1-1 is given twice"),
    ("probe", "--data {tmp}/missing", r"missing does not exist"),
    ("probe", "--candidates 1", r"--candidates must be >= 2"),
    ("probe", "--queries -1", r"--queries must be >= 0.*pass 0 for every query"),
    ("probe", "--folds 1", r"--folds must be >= 2"),
    ("probe", "--depth 0", r"--depth must be >= 1"),
    ("probe", "--min-relevance -1", r"--min-relevance must be >= 0"),
    ("probe", "--pooling max", r"--pooling item 'max' must be one of cls, mean"),
    ("probe", "--task rank", r"--task item 'rank' must be one of listwise, pairwise"),
    ("probe", "--listwise each", r"--listwise must be one of concat, shared"),
    ("probe", "--c 0", r"--c must be > 0, got 0"),
    ("probe", "--seed -1", r"--seed must be >= 0"),
    ("probe", "--max-length 0", r"--max-length must be >= 8"),
    ("probe", "--batch-size 0", r"--batch-size must be >= 1, got 0"),
    ("probe", "--device gpu", r"--device must be"),
    ("study", "--workers 0", r"--workers must be >= 1"),
    ("sae train", "--data {tmp}/missing", r"missing does not exist"),
    ("sae train", "--model ./no-such-model", r"model path ./no-such-model"),
    ("sae train", "--k 0", r"--k item '0' must be >= 1"),
    ("sae train", "--k 4,x", r"--k must be a comma-separated list of ints"),
    ("sae train", "--k 99999", r"--k 99999 is more than the SAE width 512"),
    ("sae train", "--expansion 0", r"--expansion must be >= 1"),
    ("sae train", "--auxk-alpha -1", r"--auxk-alpha must be >= 0"),
    ("sae train", "--rank-kl -1", r"--rank-kl must be >= 0"),
    ("sae train", "--max-length 0", r"--max-length must be >= 8"),
    ("sae train", "--epochs 0", r"--epochs must be >= 1"),
    ("sae train", "--batch-size 0", r"--batch-size must be >= 1"),
    ("sae train", "--lr 0", r"--lr must be > 0"),
    ("sae train", "--seed -1", r"--seed must be >= 0"),
    ("sae train", "--max-docs 0", r"--max-docs must be >= 1"),
    ("sae train", "--max-queries 0", r"--max-queries must be >= 1"),
    ("sae eval", "--data {tmp}/missing", r"missing does not exist"),
    ("sae eval", "--model ./no-such-model", r"model path ./no-such-model"),
    ("sae eval", "--max-docs 0", r"--max-docs must be >= 1"),
    ("sae eval", "--max-length 0", r"--max-length must be >= 8"),
    ("sae explain", "--data {tmp}/missing", r"missing does not exist"),
    ("sae explain", "--model ./no-such-model", r"model path ./no-such-model"),
    ("sae explain", "--latents 0", r"--latents must be >= 1"),
    ("sae explain", "--llm-latents -1", r"--llm-latents must be >= 0"),
    ("sae explain", "--max-docs 0", r"--max-docs must be >= 1"),
    ("sae explain", "--max-length 0", r"--max-length must be >= 8"),
    ("sae steer", "--data {tmp}/missing", r"missing does not exist"),
    ("sae steer", "--model ./no-such-model", r"model path ./no-such-model"),
    ("sae steer", "--latents 3,64", r"--latents 64 is out of range: the SAE has 64 latents "
     r"\(0-63\)"),
    ("sae steer", "--latents 99999", r"--latents 99999 is out of range"),
    ("sae steer", "--latents -1", r"--latents item '-1' must be >= 0"),
    ("sae steer", "--deltas 0.1,big", r"--deltas must be a comma-separated list of floats"),
    ("sae steer", "--alpha 0", r"--alpha must be >= 1"),
    ("sae steer", "--alpha 1000000", r"--alpha 1000000 is more than the SAE's 64 latents"),
    ("sae steer", "--n-feedback 0", r"--n-feedback must be >= 1"),
    ("sae steer", "--weighting mass,tf", r"--weighting item 'tf' must be one of mass, idf"),
    ("sae steer", "--seed -1", r"--seed must be >= 0"),
    ("sae steer", "--max-docs 0", r"--max-docs must be >= 1"),
    ("sae steer", "--max-length 0", r"--max-length must be >= 8"),
]
# After the corrected run: other options into its --out are refused, and it is kept.
AFTER = {
    "evaluate": [("--k 5 --data {data2}", r"holds an `irlens evaluate` run with other --data"),
                 ("--k 5 --model bm25", r"holds an `irlens evaluate` run with other --model")],
    "train bi-encoder": [(GOOD["train bi-encoder"] + " --lr 1e-3",
                          r"holds a model trained with other options \(it differs in "
                          r"learning_rate\); use a new --out")],
}
TABLES = [t for m in (analysis, attribution, neurons, retrieval, sae) for n in m.__all__
          if hasattr(t := getattr(m, n), "options")]


@pytest.fixture(scope="module")
def paths(tiny_root, tmp_path_factory) -> dict[str, Path]:
    """Tiny models, data, and the neurons and SAE folders prune and sae eval|explain|steer
    read (made by the real commands, before any guard)."""
    root = tmp_path_factory.mktemp("bad-options")
    triples = root / "triples.tsv"
    triples.write_text("what do cats eat\tcats eat mice\tthe market fell\n"
                       "stock news\tthe market fell\tcats sleep\n")
    found = {"bi": tiny_model_dir(tiny_root, "bert", "bi"),
             "bi2": tiny_model_dir(tiny_root, "bert", "bi", seed=1),
             "data": write_beir(root / "beir"), "data2": write_beir(root / "beir2"),
             "wide": _wide_beir(root / "wide"),
             "triples": triples, "cache": root / "cache",
             "tmp": root}
    for name, command in (("neurons", "neurons"), ("sae", "sae train")):
        folder = root / name
        result = invoke(command, f"{BASE[command]} {GOOD[command]}", {**found, "out": folder})
        assert result.exit_code == 0, result.output
        found[name] = folder / "k4" / "sae" if name == "sae" else folder
    return found


def _wide_beir(folder: Path) -> Path:
    """150 documents and 8 judged queries over a small vocabulary (BM25 finds hard
    negatives, and most documents lie outside a query's top 100): what editing, probing
    and SAE explanations need at least."""
    import json
    import random

    words = ("cat dog fish mouse bird river market stock rain wind grain seed meat bone "
             "salmon cold warm sun moon tree").split()
    rng = random.Random(0)
    docs = {f"d{i}": " ".join(rng.choices(words, k=8)) for i in range(150)}
    queries = {f"q{j}": " ".join(rng.sample(words, 3)) for j in range(8)}
    for j, text in enumerate(queries.values()):
        docs[f"d{j * 10}"] = f"{text} {docs[f'd{j * 10}']}"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v})
                                                 + "\n" for k, v in docs.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n"
                                                  for k, v in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{j}\td{j * 10}\t1\n" for j in range(8)))
    return folder


def invoke(command: str, args: str, paths: dict[str, Path]):
    words = shlex.split(args.format(**{k: str(v) for k, v in paths.items()}))
    return runner.invoke(app, [*command.split(), *words])


def guard(monkeypatch) -> None:
    """Loading a model (irlens' loader, or any transformers weights) fails the test."""
    import transformers

    import irlens
    import irlens.editing.pipeline
    import irlens.models
    import irlens.models.loading

    def refuse(*args, **kwargs):
        pytest.fail("a model was loaded before the bad option was refused")

    for module in (irlens, irlens.models, irlens.models.loading, irlens.editing.pipeline):
        monkeypatch.setattr(module, "load_model", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))


@pytest.fixture
def no_model(monkeypatch):
    guard(monkeypatch)


def refused(command: str, bad: str, paths: dict[str, Path], out: Path):
    before = _files(out)
    result = invoke(command, f"{BASE[command]} {bad}", {**paths, "out": out})
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), \
        result.stderr
    assert _files(out) == before, "the refused run wrote to --out"
    return lines[0]


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))} \
        if folder.exists() else {}


@pytest.mark.parametrize(("command", "bad", "message"), ROWS,
                         ids=[f"{c}:{b}" for c, b, _ in ROWS])
def test_a_bad_option_is_one_line_before_any_model_loads(paths, no_model, tmp_path, command,
                                                         bad, message):
    line = refused(command, bad, paths, tmp_path / "out")
    assert re.search(message, line), line


def test_every_checked_option_has_a_row():
    """A new option with a check gets a row above (or this fails)."""
    missing = []
    for table in TABLES:
        rows = " ".join(b for c, b, _ in ROWS if c == table.command)
        for option in table:
            if option.check and not option.argument and not any(
                    f"{flag} " in rows + " " for flag in (option.flag, *option.flags)):
                missing.append(f"{table.command} {option.flag}")
    assert not missing, missing
    assert {t.command for t in TABLES} - {"report"} == set(BASE)


@pytest.mark.parametrize("command", list(BASE))
def test_the_corrected_command_succeeds_in_the_same_out(paths, tmp_path, monkeypatch, command):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        guard(patch)
        for _, bad, _ in (r for r in ROWS if r[0] == command):
            refused(command, bad, paths, out)
    good = f"{BASE[command]} {GOOD[command]}"
    if command == "study":
        good = f"{paths['tmp']}/{tmp_path.name}-study.yaml --init"
    result = invoke(command, good, {**paths, "out": out})
    assert result.exit_code == 0, result.output
    with monkeypatch.context() as patch:
        guard(patch)
        for other, message in AFTER.get(command, []):
            assert re.search(message, refused(command, other, paths, out))
