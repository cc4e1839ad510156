"""Train an SAE on an activation cache: resumable, with progress, fingerprinted.

The loop follows Gao et al. (2024) and sparsify's trainer: Adam (PyTorch's fused kernel),
the TopK pass of :mod:`irlens.sae.topk` (a sparse encoder gradient), decoder rows renormalised
after every step and the gradient parallel to them removed, FVU loss plus AuxK (k_aux =
d_in / 2) on latents that have not fired for ``dead_after`` inputs; the decoder bias
starts at the geometric median of a sample of the data. The optional ranking term is Kang
et al. (NAACL 2025)'s: KL between the softmax over each vector's top-``rank_m`` neighbour
similarities (within the batch) before and after reconstruction.

``out/`` holds ``manifest.json`` (config, cache and model fingerprints), ``checkpoint.pt``
(written atomically every ``checkpoint_every`` steps: a rerun resumes from it, a changed
config or cache is refused) and, when done, the SAE in ``out/sae``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from irlens._io import atomic_path
from irlens.artifacts import Manifest, Store
from irlens.errors import IrlensError
from irlens.sae.cache import Activations
from irlens.sae.heldout import trained_on
from irlens.sae.model import SAEConfig, SparseAutoencoder, geometric_median, load_sae
from irlens.sae.topk import topk_encode

__all__ = ["TrainConfig", "batch_topk_threshold", "rank_kl_loss", "train_sae",
           "training_step"]

KIND = "sae-training"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the SAE's own shape is :class:`SAEConfig`).

    ``balance`` samples every source dataset of the cache equally often (see
    :meth:`Activations.batches`), instead of in proportion to its size.
    """

    epochs: int = 10
    batch_size: int = 512
    lr: float | None = None
    lr_end_share: float = 0.1
    seed: int = 0
    checkpoint_every: int = 100
    median_sample: int = 4096
    balance: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.median_sample < 1:
            raise IrlensError("epochs, batch_size and median_sample must be positive")

    def learning_rate(self, width: int) -> float:
        """sparsify's default, 2e-4 / sqrt(width / 2^14), unless ``lr`` is set."""
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(width / 2**14)


def rank_kl_loss(x: Tensor, x_hat: Tensor, m: int, temperature: float = 0.05,
                 rows: int = 256) -> Tensor:
    """Kang et al.'s ranking-preservation term, in-batch: for the first ``rows`` vectors,
    KL(softmax(original top-m cosine / T) || softmax(reconstructed, same neighbours))."""
    q, q_hat = F.normalize(x[:rows], dim=-1), F.normalize(x_hat[:rows], dim=-1)
    d, d_hat = F.normalize(x, dim=-1), F.normalize(x_hat, dim=-1)
    sims = q @ d.T
    sims.fill_diagonal_(float("-inf"))
    m = min(m, len(x) - 1)
    if m < 2:
        return x.new_zeros(())
    top, idx = sims.topk(m, dim=1)
    recon = (q_hat @ d_hat.T).gather(1, idx)
    p = F.log_softmax(top / temperature, dim=1)
    p_hat = F.log_softmax(recon / temperature, dim=1)
    return F.kl_div(p_hat, p, log_target=True, reduction="batchmean")


def training_step(sae: SparseAutoencoder, x: Tensor, dead_mask: Tensor | None
                  ) -> tuple[Tensor, dict[str, float], Tensor]:
    """Loss of one batch, its parts, and the boolean mask of latents that fired."""
    cfg = sae.cfg
    total_variance = (x - x.mean(0)).pow(2).sum()
    if cfg.batch_topk:
        z, pre = sae.batch_topk(x)
        x_hat = sae.decode(z)
        fired = (z > 0).any(0)
    else:
        enc = sae.coder.encoder
        acts, idx = topk_encode(x - sae.b_dec, enc.weight, enc.bias, cfg.k)
        x_hat = F.embedding_bag(idx, sae.W_dec, per_sample_weights=acts, mode="sum") + sae.b_dec
        pre = None
        fired = torch.zeros(sae.width, dtype=torch.bool)
        fired[idx[acts > 0]] = True
    e = x - x_hat
    fvu = e.pow(2).sum() / total_variance
    auxk = x.new_zeros(())
    if cfg.auxk_alpha > 0 and dead_mask is not None and (n_dead := int(dead_mask.sum())) > 0:
        # the TopK pass keeps no pre-activations: encode the dead rows again (n_dead
        # columns, not the whole width), so their encoder rows learn too (sparsify's AuxK
        # trains only the dead decoder rows)
        k_aux = min(x.shape[1] // 2, n_dead)
        scale = min(n_dead / (x.shape[1] // 2), 1.0)
        dead_idx = dead_mask.nonzero().squeeze(1)
        if pre is None:
            enc = sae.coder.encoder
            pre_dead = F.relu(F.linear(x - sae.coder.b_dec, enc.weight[dead_idx],
                                       enc.bias[dead_idx]))
        else:
            pre_dead = pre[:, dead_idx]
        acts, j = pre_dead.topk(k_aux, dim=1)
        e_hat = F.embedding_bag(dead_idx[j], sae.W_dec, per_sample_weights=acts, mode="sum")
        auxk = scale * (e_hat - e.detach()).pow(2).sum() / total_variance
    loss = fvu + cfg.auxk_alpha * auxk
    parts = {"fvu": float(fvu.detach()), "auxk": float(auxk.detach())}
    if cfg.rank_kl > 0:
        kl = rank_kl_loss(x, x_hat, cfg.rank_m)
        loss = loss + cfg.rank_kl * kl
        parts["rank_kl"] = float(kl.detach())
    return loss, parts, fired


@torch.no_grad()
def batch_topk_threshold(sae: SparseAutoencoder, acts: Activations, chunk: int = 4096
                         ) -> float:
    """The BatchTopK inference threshold: the ``k * rows``-th largest pre-activation over
    every row of ``acts`` (one pass, keeping only the running top values), so that a
    JumpReLU at it fires ``k`` latents per row on average, as BatchTopK over the whole
    data would."""
    keep = sae.cfg.k * len(acts)
    top = torch.empty(0)
    for x in acts.shards():
        for s in range(0, len(x), chunk):
            pre = sae.pre_acts(torch.from_numpy(x[s:s + chunk])).flatten()
            pre = pre[pre > 0]
            top = torch.cat([top, pre])
            if len(top) > keep:
                top = top.topk(keep, sorted=False).values
    return float(top.min()) if len(top) >= keep else 0.0


def train_sae(acts: Activations, out: str | Path, sae_config: SAEConfig | None = None,
              train_config: TrainConfig | None = None, *, progress: bool = True,
              **sae_options) -> SparseAutoencoder:
    """Train (or resume training) an SAE on ``acts``; return it, saved in ``out/sae``.

    ``sae_options`` (``k``, ``expansion_factor``, ``batch_topk``, ...) build the
    :class:`SAEConfig` when none is given; ``d_in`` comes from the cache.
    """
    cfg = sae_config or SAEConfig(d_in=acts.dim, **sae_options)
    if cfg.d_in != acts.dim:
        raise IrlensError(f"the SAE takes {cfg.d_in}-d inputs but the cache holds {acts.dim}-d "
                          "vectors; drop d_in or use the matching cache")
    tcfg = train_config or TrainConfig()
    out = Path(out)
    cache = acts.manifest
    config = {"sae": dataclasses.asdict(cfg), "train": dataclasses.asdict(tcfg),
              "cache": {"config": cache.config, "rows": len(acts)}}
    manifest = Manifest(kind=KIND, config=config, model_id=cache.model_id,
                        model_fingerprint=cache.model_fingerprint, hooks=cache.hooks)
    store = Store(out, manifest)
    if (store.folder / "sae" / "cfg.json").is_file():
        return load_sae(store.folder / "sae")

    torch.manual_seed(tcfg.seed)
    sae = SparseAutoencoder(cfg, dataclasses.replace(manifest, kind="sae"))
    lr = tcfg.learning_rate(cfg.width)
    # the fused kernel: the same Adam update, several times faster on a CPU than the default
    optim = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10, fused=True)
    steps_per_epoch = math.ceil(len(acts) / tcfg.batch_size)
    total = steps_per_epoch * tcfg.epochs
    state = {"step": 0, "since_fired": torch.zeros(cfg.width, dtype=torch.long),
             "seconds": 0.0, "last": {}}
    ckpt = store.folder / "checkpoint.pt"
    if ckpt.is_file():
        saved = torch.load(ckpt, weights_only=False)
        sae.load_state_dict(saved["sae"])
        optim.load_state_dict(saved["optim"])
        state = saved["state"]
    else:
        with torch.no_grad():
            sae.coder.b_dec.copy_(geometric_median(acts.sample(tcfg.median_sample,
                                                               seed=tcfg.seed)))

    def lr_at(step: int) -> float:
        decay_from = int(total * 0.8)
        if step < decay_from:
            return lr
        share = (step - decay_from) / max(total - decay_from, 1)
        return lr * (1 - share * (1 - tcfg.lr_end_share))

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state["step"], desc=f"train SAE k={cfg.k}", unit="step",
               disable=not progress)
    sae.train()
    while state["step"] < total:
        epoch, skip = divmod(state["step"], steps_per_epoch)
        batches = acts.batches(tcfg.batch_size, seed=tcfg.seed, epoch=epoch,
                               balance=tcfg.balance)
        for i, x in enumerate(batches):
            if i < skip:
                continue
            start = time.perf_counter()
            dead = state["since_fired"] > cfg.dead_after
            loss, parts, fired = training_step(sae, x, dead)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            sae.coder.remove_gradient_parallel_to_decoder_directions()
            for group in optim.param_groups:
                group["lr"] = lr_at(state["step"])
            optim.step()
            sae.coder.set_decoder_norm_to_unit_norm()
            state["since_fired"] += len(x)
            state["since_fired"][fired] = 0
            state["step"] += 1
            state["seconds"] += time.perf_counter() - start
            state["last"] = {**parts, "dead": float(dead.float().mean())}
            bar.update(1)
            bar.set_postfix(fvu=f"{parts['fvu']:.3f}", dead=f"{state['last']['dead']:.1%}")
            if state["step"] % tcfg.checkpoint_every == 0 and state["step"] < total:
                with atomic_path(ckpt) as tmp:
                    torch.save({"sae": sae.state_dict(), "optim": optim.state_dict(),
                                "state": state}, tmp)
            if state["step"] >= total:
                break
    bar.close()
    sae.eval()
    if cfg.batch_topk:
        sae.threshold.fill_(batch_topk_threshold(sae, acts))
    samples = total * tcfg.batch_size
    training = {"steps": total, "samples": samples, "seconds": state["seconds"],
                "samples_per_s": samples / max(state["seconds"], 1e-9), **state["last"]}
    sae.save(store.folder / "sae", training=training, trained_on=trained_on(cache.config))
    ckpt.unlink(missing_ok=True)
    # the trained module is what was saved: hand it back with the saved manifest, no reload
    sae.manifest = Manifest.read(store.folder / "sae")
    return sae
