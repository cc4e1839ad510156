"""SAE core: activation cache, TopK/BatchTopK, AuxK, training, SAELens format, fidelity."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from irlens.data import load_dataset
from irlens.errors import IrlensError
from irlens.evaluation import evaluate
from irlens.retrieval import dense_search
from irlens.sae import (
    Activations,
    SAEConfig,
    SparseAutoencoder,
    TrainConfig,
    cache_activations,
    cache_array,
    load_sae,
    train_sae,
)
from irlens.sae.fidelity import evaluate_fidelity
from irlens.sae.train import training_step
from tests.tiny import tiny_model
from tests.tiny_data import write_beir

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(d=16, n_atoms=32, n=3000, k=3, seed=0):
    """Sparse non-negative mixtures of known unit atoms."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    idx = torch.stack([torch.randperm(n_atoms, generator=g)[:k] for _ in range(n)])
    coef = torch.rand(n, k, generator=g) * 2 + 0.5
    return (coef[..., None] * atoms[idx]).sum(1), atoms


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae")
    return tiny_model(root / "m"), load_dataset(write_beir(root / "data")), root


def test_planted_dictionary_is_recovered(tmp_path):
    x, atoms = planted()
    acts = cache_array(x, tmp_path / "cache", shard_size=1000)
    sae = train_sae(acts, tmp_path / "run", SAEConfig(d_in=16, expansion_factor=2, k=3,
                                                      dead_after=1000),
                    TrainConfig(epochs=20, batch_size=256, lr=1e-2), progress=False)
    cos = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1) @ atoms.T
    assert cos.max(0).values.mean() >= 0.9
    # decoder rows stay unit norm
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.width), atol=1e-4)


def test_topk_keeps_exactly_the_k_largest():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, expansion_factor=8, k=5))
    x = torch.randn(50, 8)
    z = sae.encode(x).detach().numpy()
    assert ((z > 0).sum(1) == 5).all()
    # independent reference: numpy pre-activations, the 5 largest per row
    w = sae.coder.encoder.weight.detach().numpy().astype(np.float64)
    b = sae.coder.encoder.bias.detach().numpy()
    pre = np.maximum((x.numpy() - sae.b_dec.detach().numpy()) @ w.T + b, 0)
    ref = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1)[:, :5]
    np.put_along_axis(ref, top, np.take_along_axis(pre, top, 1), 1)
    np.testing.assert_allclose(z, ref, atol=1e-5)


def test_batch_topk_keeps_k_per_input_on_average():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, expansion_factor=8, k=4, batch_topk=True))
    z, pre = sae.batch_topk(torch.randn(32, 8))
    assert int((z > 0).sum()) == 4 * 32
    assert z.max() == pre.max()


@pytest.mark.parametrize("batch_topk", [False, True])
def test_auxk_revives_dead_latents(batch_topk):
    x, _ = planted(d=16, n=512, seed=1)

    def firing(sae):  # latents 32.. that are among the kept activations of some input
        z, _ = sae.batch_topk(x) if batch_topk else (sae.encode(x), None)
        return int((z[:, 32:] > 0).any(0).sum())

    def run(alpha):
        torch.manual_seed(0)
        sae = SparseAutoencoder(SAEConfig(d_in=16, expansion_factor=4, k=3, auxk_alpha=alpha,
                                          batch_topk=batch_topk))
        dead = torch.zeros(sae.width, dtype=torch.bool)
        dead[32:] = True
        with torch.no_grad():  # latents 32.. start with small weights: they never win
            sae.coder.encoder.weight[32:] *= 0.05
        assert firing(sae) == 0
        optim = torch.optim.Adam(sae.parameters(), lr=2e-2)
        for _ in range(40):
            loss, _, _ = training_step(sae, x, dead)
            optim.zero_grad()
            loss.backward()
            optim.step()
        return firing(sae)

    assert run(0.0) == 0
    assert run(1.0) >= 8


def test_auxk_loss_and_gradients_match_the_dense_formula():
    from irlens.sae.train import training_step

    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=16, expansion_factor=4, k=3, auxk_alpha=1.0))
    x = torch.randn(32, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::5] = True
    loss, parts, _ = training_step(sae, x, dead)
    loss.backward()
    ours = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    # reference: Gao et al.'s AuxK on the full pre-activations, non-dead latents masked
    out = sae.coder(x, total_variance=(x - x.mean(0)).pow(2).sum())
    e = x - out.sae_out
    pre = torch.relu(sae.coder.encoder(x - sae.coder.b_dec))
    acts, idx = torch.where(dead[None], pre, torch.zeros_like(pre)).topk(8, dim=1)
    e_hat = (acts[..., None] * sae.W_dec[idx]).sum(1)
    scale = min(13 / 8, 1.0)  # 13 dead latents, k_aux = d_in / 2 = 8
    auxk = scale * (e_hat - e.detach()).pow(2).sum() \
        / (x - x.mean(0)).pow(2).sum()
    assert parts["auxk"] == pytest.approx(float(auxk.detach()), rel=1e-5)
    (out.fvu + auxk).backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6)


def test_topk_encoder_matches_autograd_through_the_dense_formula():
    from irlens.sae.topk import topk_encode

    torch.manual_seed(0)
    x = torch.randn(40, 16, requires_grad=True)
    w = torch.randn(48, 16, requires_grad=True)
    b = torch.randn(48)
    b[:40] -= 30  # 8 latents can fire: rows with fewer than k positive pre-activations
    b.requires_grad_(True)
    target = torch.randn(40, 48)

    def loss_of(z):
        return (z * target).sum() + z.pow(2).sum()

    values, idx = topk_encode(x, w, b, 6)
    z = torch.zeros(40, 48).scatter(1, idx, values)
    loss_of(z).backward()
    ours = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    pre = torch.relu(x @ w.T + b)  # reference: plain autograd, ReLU then TopK
    ref_values, ref_idx = pre.topk(6, dim=1)
    ref_z = torch.zeros(40, 48).scatter(1, ref_idx, ref_values)
    assert (pre > 0).sum(1).min() < 6  # the short rows exist
    torch.testing.assert_close(z, ref_z)
    loss_of(ref_z).backward()
    for mine, t in zip(ours, (x, w, b), strict=True):
        torch.testing.assert_close(mine, t.grad, rtol=1e-5, atol=1e-5)


def test_sae_lens_loads_our_files(tmp_path):
    from sae_lens import SAE  # the sae-lens extra; CI installs it (never skipped)

    torch.manual_seed(0)
    x = torch.randn(20, 12)
    for batch_topk in (False, True):
        sae = SparseAutoencoder(SAEConfig(d_in=12, expansion_factor=4, k=6,
                                          batch_topk=batch_topk))
        with torch.no_grad():
            sae.coder.b_dec.normal_()
            sae.coder.encoder.bias.normal_(0, 0.1)
            sae.threshold.fill_(0.2)
        folder = sae.save(tmp_path / f"sae-{batch_topk}")
        theirs = SAE.load_from_disk(str(folder))
        with torch.no_grad():
            np.testing.assert_allclose(theirs.encode(x).numpy(), sae.encode(x).numpy(),
                                       atol=1e-5)
            np.testing.assert_allclose(theirs(x).numpy(), sae(x).numpy(), atol=1e-5)
        ours = load_sae(folder)
        np.testing.assert_allclose(ours(x).detach().numpy(), sae(x).detach().numpy(),
                                   atol=1e-6)


def test_sparsify_folders_load(tmp_path):
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    coder = SparseCoder(16, SparseCoderConfig(k=4, num_latents=64))
    with torch.no_grad():
        coder.b_dec.normal_()
    coder.save_to_disk(tmp_path / "sp")
    sae = load_sae(tmp_path / "sp")
    assert (sae.cfg.d_in, sae.width, sae.cfg.k) == (16, 64, 4)
    x = torch.randn(10, 16)
    with torch.no_grad():
        torch.testing.assert_close(sae(x), coder(x).sae_out)
    cfg = json.loads((tmp_path / "sp" / "cfg.json").read_text())
    (tmp_path / "sp" / "cfg.json").write_text(json.dumps({**cfg, "activation": "groupmax"}))
    with pytest.raises(IrlensError, match="groupmax"):
        load_sae(tmp_path / "sp")


def test_k_larger_than_width_is_one_line():
    with pytest.raises(IrlensError, match="k=65 must be between 1 and the SAE width 64") as err:
        SAEConfig(d_in=8, expansion_factor=8, k=65)
    assert "\n" not in str(err.value)


def test_cache_resumes_and_refuses_another_model(tiny, tmp_path):
    model, data, root = tiny
    acts = cache_activations(model, [data], tmp_path / "c", shard_size=4, progress=False)
    assert len(acts) == len(data.corpus) + len(data.queries)
    index = acts.index()
    assert set(index[index.side == "doc"].id) == set(data.doc_ids)
    # rows are the model's own vectors
    first = acts.shard(acts.keys[0])
    ref = model.encode_docs(data.doc_texts(data.doc_ids[:4])).numpy()
    np.testing.assert_allclose(first, ref, atol=1e-5)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "c" / "jobs").rglob("*.safetensors")}
    cache_activations(model, [data], tmp_path / "c", shard_size=4, progress=False)
    assert mtimes == {p: p.stat().st_mtime_ns
                      for p in (tmp_path / "c" / "jobs").rglob("*.safetensors")}
    other = tiny_model(root / "m2", seed=1)
    with pytest.raises(IrlensError, match="was made by model") as err:
        cache_activations(other, [data], tmp_path / "c", shard_size=4, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(IrlensError, match="does not fit"):
        Activations(tmp_path / "c").check_model(other)


def test_balanced_batches_draw_every_dataset_equally(tiny, tmp_path):
    model, small, _ = tiny
    big = tmp_path / "big"
    (big / "qrels").mkdir(parents=True)
    (big / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"b{i}", "title": "", "text": f"document number {i} about topic "
                    f"{i % 7} and item {i * 13 % 50}"}) + "\n" for i in range(60)))
    (big / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "topic"}) + "\n")
    (big / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tb1\t1\n")
    acts = cache_activations(model, [small, load_dataset(big)], tmp_path / "c", shard_size=8,
                             progress=False)
    rows = np.concatenate(list(acts.shards()))
    source = np.array([s for s, n in zip(acts.sources(), acts.rows_per_shard, strict=True)
                       for _ in range(n)])
    n_small = int((source == small.name).sum())
    assert n_small == len(small.corpus) + len(small.queries) and len(acts) == n_small + 61

    def drawn(balance: bool) -> np.ndarray:
        batches = list(acts.batches(7, seed=3, epoch=1, balance=balance))
        assert len(batches) == -(-len(acts) // 7) and all(len(b) == 7 for b in batches)
        x = torch.cat(batches).numpy()
        # each drawn vector's row in the cache (vectors are distinct)
        return ((x[:, None, :] - rows[None]) ** 2).sum(-1).argmin(1)

    plain = np.bincount(drawn(False), minlength=len(acts))
    assert plain.min() >= 1  # every row once (the top-up repeats a few)
    balanced = np.bincount(drawn(True), minlength=len(acts))
    share_small = balanced[source == small.name].sum() / balanced.sum()
    assert 0.45 <= share_small <= 0.55  # 50% instead of its 13% of the rows
    assert balanced[source == small.name].min() >= 3  # the small set repeats whole
    assert balanced[source != small.name].max() <= 2  # the large one is subsampled


def test_token_level_cache_has_one_row_per_token(tiny, tmp_path):
    model, data, _ = tiny
    acts = cache_activations(model, [data], tmp_path / "t", hook="layer.1.resid",
                             sides=["query"], progress=False)
    n_tokens = sum(int(model.tokenize([q], "query").attention_mask.sum())
                   for q in data.query_texts())
    assert len(acts) == n_tokens and acts.dim == 32
    assert sorted(set(acts.index().position)) == list(range(acts.index().position.max() + 1))


def test_training_resumes_from_its_checkpoint_and_refuses_a_new_config(tmp_path):
    x, _ = planted(n=600)
    acts = cache_array(x, tmp_path / "c", shard_size=200)
    cfg = SAEConfig(d_in=16, expansion_factor=2, k=3)
    tcfg = TrainConfig(epochs=2, batch_size=100, checkpoint_every=3)
    straight = train_sae(acts, tmp_path / "a", cfg, tcfg, progress=False)
    # a run stopped after 6 steps (its checkpoint), then resumed, ends the same
    interrupted = dataclasses.replace(tcfg)
    import irlens.sae.train as train_module

    class Stop(Exception):
        pass

    real = train_module.training_step
    calls = {"n": 0}

    def stop_after_six(*args):
        calls["n"] += 1
        if calls["n"] > 6:
            raise Stop
        return real(*args)

    train_module.training_step = stop_after_six
    try:
        with pytest.raises(Stop):
            train_sae(acts, tmp_path / "b", cfg, interrupted, progress=False)
    finally:
        train_module.training_step = real
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    resumed = train_sae(acts, tmp_path / "b", cfg, interrupted, progress=False)
    torch.testing.assert_close(resumed.W_dec, straight.W_dec)
    with pytest.raises(IrlensError, match="config differs in sae"):
        train_sae(acts, tmp_path / "b", SAEConfig(d_in=16, expansion_factor=2, k=4), tcfg,
                  progress=False)


def test_fidelity_original_run_matches_dense_search(tiny, tmp_path):
    model, data, _ = tiny
    acts = cache_activations(model, [data], tmp_path / "c", progress=False)
    sae = train_sae(acts, tmp_path / "t", k=4, expansion_factor=2,
                    train_config=TrainConfig(epochs=2, batch_size=4), progress=False)
    fid = evaluate_fidelity(model, sae, data, cache_dir=tmp_path / "emb", progress=False)
    ref = evaluate(dense_search(model, data, cache_dir=tmp_path / "emb", progress=False),
                   data.qrels, ["nDCG@10", "R@100"]).aggregate
    assert fid.scores["original"] == pytest.approx(ref)
    # FVU against an independent numpy computation
    x = np.concatenate([np.concatenate(list(acts.shards()))])
    order = acts.index()
    assert len(x) == fid.n_vectors
    with torch.no_grad():
        xh = sae(torch.from_numpy(x)).numpy()
    fvu = ((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert fid.fvu == pytest.approx(float(fvu), rel=1e-4)
    assert 0 <= fid.dead_share <= 1 and fid.l0 <= 4
    assert order.shape[0] == len(x)
    saved = fid.save(tmp_path / "fid")
    assert type(fid).load(saved).scores == fid.scores
    with pytest.raises(IrlensError, match="was made by model"):
        evaluate_fidelity(tiny_model(tmp_path / "o", seed=2), sae, data, progress=False)
    with pytest.raises(IrlensError, match="1 query vectors for 3 queries"):
        evaluate_fidelity(model, sae, data, cache_dir=tmp_path / "emb", progress=False,
                          query_vectors=torch.zeros(1, 32))


def test_rank_kl_is_zero_for_a_perfect_reconstruction_and_matches_scipy():
    from scipy.special import softmax
    from scipy.stats import entropy

    from irlens.sae.train import rank_kl_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g)
    assert float(rank_kl_loss(x, x.clone(), m=4)) == pytest.approx(0.0, abs=1e-6)
    x_hat = x + 0.3 * torch.randn(12, 6, generator=g)
    got = float(rank_kl_loss(x, x_hat, m=4, temperature=0.1, rows=5))
    # reference: numpy loops over the first 5 rows and their 4 nearest other rows
    xn = (x / x.norm(dim=1, keepdim=True)).numpy()
    hn = (x_hat / x_hat.norm(dim=1, keepdim=True)).numpy()
    kls = []
    for i in range(5):
        sims = [(float(xn[i] @ xn[j]), j) for j in range(12) if j != i]
        top = sorted(sims, reverse=True)[:4]
        p = softmax(np.array([s for s, _ in top]) / 0.1)
        q = softmax(np.array([float(hn[i] @ hn[j]) for _, j in top]) / 0.1)
        kls.append(entropy(p, q))
    assert got == pytest.approx(float(np.mean(kls)), rel=1e-4)
