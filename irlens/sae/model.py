"""TopK and BatchTopK sparse autoencoders over retriever vectors.

``z = TopK(ReLU(W_enc (x - b_dec) + b_enc))``, ``x_hat = W_dec z + b_dec`` (Gao et al.,
"Scaling and evaluating sparse autoencoders", 2024), with unit-norm decoder rows and the
AuxK loss that trains dead latents on the residual. BatchTopK (Bussmann et al., 2024)
keeps the ``k * batch`` largest activations of a batch while training and, at inference,
a threshold (a JumpReLU) set after training to the ``k * rows``-th largest
pre-activation over the training data.

Built on EleutherAI's ``sparsify.SparseCoder`` (its parameters, TopK encoder at inference,
decoder-norm helpers); written here: BatchTopK, which sparsify lacks, and the TopK
training pass (:mod:`irlens.sae.topk`, whose sparse weight gradient is several times
faster on a CPU). ``benchmarks/sae.py`` compares the training loop with sparsify's plain
loop and SAELens's ``SAETrainer``.

Saved in SAELens's on-disk format (``cfg.json`` + ``sae_weights.safetensors``; BatchTopK
as ``jumprelu``, as SAELens saves it), plus an irlens ``manifest.json``; sparsify's own
folders (``cfg.json`` + ``sae.safetensors``) are read too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from irlens.artifacts import Manifest, atomic_dir, make_manifest
from irlens.errors import IrlensError

__all__ = ["SAEConfig", "SparseAutoencoder", "geometric_median", "load_sae"]

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
KIND = "sae"


@dataclasses.dataclass(frozen=True)
class SAEConfig:
    """Shape and objective of an SAE.

    Attributes:
        d_in: input width (the retriever's vector size).
        expansion_factor: latents per input dimension (``width = d_in * expansion_factor``).
        k: active latents per input (TopK) or on average (BatchTopK).
        batch_topk: BatchTopK instead of per-input TopK.
        auxk_alpha: weight of the AuxK loss on dead latents (0 turns it off).
        dead_after: a latent that has not fired for this many training inputs is dead.
        rank_kl: weight of Kang et al.'s ranking-preservation KL (0 turns it off).
        rank_m: neighbours per query in that term.
    """

    d_in: int
    expansion_factor: int = 16
    k: int = 64
    batch_topk: bool = False
    auxk_alpha: float = 1 / 32
    dead_after: int = 20_000
    rank_kl: float = 0.0
    rank_m: int = 10

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.expansion_factor < 1:
            raise IrlensError(f"d_in ({self.d_in}) and expansion_factor "
                              f"({self.expansion_factor}) must be positive")
        if not 1 <= self.k <= self.width:
            raise IrlensError(f"k={self.k} must be between 1 and the SAE width {self.width} "
                              f"(d_in {self.d_in} x expansion {self.expansion_factor}); "
                              "lower k or raise the expansion factor")

    @property
    def width(self) -> int:
        return self.d_in * self.expansion_factor


class SparseAutoencoder(nn.Module):
    """A TopK/BatchTopK SAE: ``encode`` -> dense latents, ``decode`` -> vectors."""

    def __init__(self, cfg: SAEConfig, manifest: Manifest | None = None):
        super().__init__()
        try:  # sparsify prints a notice about Triton on stdout: keep stdout for data
            with contextlib.redirect_stdout(sys.stderr):
                from sparsify import SparseCoder, SparseCoderConfig
        except ImportError:
            raise IrlensError("SAEs need eai-sparsify: pip install irlens[sae]") from None

        self.cfg = cfg
        self.coder = SparseCoder(cfg.d_in, SparseCoderConfig(
            k=cfg.k, num_latents=cfg.width, normalize_decoder=True))
        # BatchTopK inference threshold (a JumpReLU); set by train_sae after training
        self.register_buffer("threshold", torch.zeros(()))
        self.manifest = manifest or make_manifest(KIND, dataclasses.asdict(cfg))

    @property
    def width(self) -> int:
        return self.cfg.width

    @property
    def W_dec(self) -> Tensor:  # noqa: N802 - the field's name in every SAE paper
        """Decoder directions [width, d_in] (unit rows)."""
        return self.coder.W_dec

    @property
    def b_dec(self) -> Tensor:
        return self.coder.b_dec

    @property
    def fingerprint(self) -> str:
        """sha1 of the configuration and every weight (keys results made with this SAE)."""
        import hashlib

        digest = hashlib.sha1(json.dumps(dataclasses.asdict(self.cfg), sort_keys=True).encode())
        for name, value in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def pre_acts(self, x: Tensor) -> Tensor:
        """ReLU pre-activations [n, width]."""
        return torch.relu(self.coder.encoder(x - self.coder.b_dec))

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Top-``k`` activations and their latent indices, each [n, k] (TopK)."""
        out = self.coder.encode(x)
        return out.top_acts, out.top_indices

    def encode(self, x: Tensor) -> Tensor:
        """Dense latent activations [n, width] at inference (TopK, or the BatchTopK
        threshold)."""
        if self.cfg.batch_topk:
            pre = self.pre_acts(x)
            return pre * (pre > self.threshold)
        acts, idx = self.encode_sparse(x)
        return torch.zeros(len(x), self.width, dtype=acts.dtype,
                           device=acts.device).scatter_(1, idx, acts)

    def decode(self, z: Tensor) -> Tensor:
        """Vectors [n, d_in] from dense latents [n, width]."""
        return z @ self.coder.W_dec + self.coder.b_dec

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x``."""
        return self.decode(self.encode(x))

    # -- training step pieces ------------------------------------------------------------
    def batch_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """BatchTopK training pass: dense latents keeping the ``k * n`` largest of the
        batch, and the pre-activations (for AuxK)."""
        pre = self.pre_acts(x)
        flat = pre.flatten()
        keep = flat.topk(min(self.cfg.k * len(x), flat.numel()), sorted=False).indices
        mask = torch.zeros_like(flat, dtype=torch.bool).index_fill_(0, keep, True)
        z = (flat * mask).view_as(pre)
        return z, pre

    # -- saving --------------------------------------------------------------------------
    def save(self, folder: str | Path, **metadata: Any) -> Path:
        """Write SAELens's format (``cfg.json``, ``sae_weights.safetensors``) and an irlens
        manifest, atomically."""
        from safetensors.torch import save_file

        folder = Path(folder)
        weights = {
            "W_enc": self.coder.encoder.weight.detach().T.contiguous(),
            "b_enc": self.coder.encoder.bias.detach().contiguous(),
            "W_dec": self.coder.W_dec.detach().contiguous(),
            "b_dec": self.coder.b_dec.detach().contiguous(),
        }
        cfg = {"architecture": "jumprelu" if self.cfg.batch_topk else "topk",
               "d_in": self.cfg.d_in, "d_sae": self.width, "dtype": "float32",
               "device": "cpu", "apply_b_dec_to_input": True,
               "normalize_activations": "none", "reshape_activations": "none",
               "metadata": {"model_name": self.manifest.model_id,
                            "hook_name": (self.manifest.hooks or ["pooled"])[0],
                            "sae_lens_training_version": None},
               "irlens": dataclasses.asdict(self.cfg)}
        if self.cfg.batch_topk:
            weights["threshold"] = self.threshold.detach().expand(self.width).contiguous()
        else:
            cfg["k"] = self.cfg.k
        manifest = dataclasses.replace(self.manifest, kind=KIND,
                                       config=dataclasses.asdict(self.cfg),
                                       extra={**self.manifest.extra, **metadata})
        with atomic_dir(folder) as tmp:
            save_file(weights, str(tmp / WEIGHTS))
            (tmp / CFG).write_text(json.dumps(cfg, indent=2) + "\n")
            manifest.write(tmp)
        return folder


def load_sae(folder: str | Path) -> SparseAutoencoder:
    """Read an SAE saved by :meth:`SparseAutoencoder.save`, any SAELens ``topk`` SAE, or a
    sparsify TopK ``SparseCoder`` folder (``cfg.json`` + ``sae.safetensors``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / CFG).is_file() and (folder / SPARSIFY_WEIGHTS).is_file():
        return _load_sparsify(folder)
    if not (folder / CFG).is_file() or not (folder / WEIGHTS).is_file():
        raise IrlensError(f"{folder} holds no SAE ({CFG} and {WEIGHTS}); pass the folder "
                          "irlens sae train wrote (its sae/ subfolder)")
    raw = json.loads((folder / CFG).read_text())
    if "irlens" in raw:
        cfg = SAEConfig(**raw["irlens"])
    elif raw.get("architecture") == "topk":
        d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
        if d_sae % d_in:
            raise IrlensError(f"{folder}: width {d_sae} is not a multiple of d_in {d_in}")
        cfg = SAEConfig(d_in=d_in, expansion_factor=d_sae // d_in, k=int(raw["k"]))
    else:
        raise IrlensError(f"{folder}: architecture {raw.get('architecture')!r} is not "
                          "supported; irlens reads topk SAEs and its own BatchTopK")
    manifest = (Manifest.read(folder) if (folder / "manifest.json").is_file()
                else make_manifest(KIND, dataclasses.asdict(cfg)))
    sae = SparseAutoencoder(cfg, manifest)
    w = load_file(str(folder / WEIGHTS))
    with torch.no_grad():
        sae.coder.encoder.weight.copy_(w["W_enc"].T)
        sae.coder.encoder.bias.copy_(w["b_enc"])
        sae.coder.W_dec.copy_(w["W_dec"])
        sae.coder.b_dec.copy_(w["b_dec"])
        if "threshold" in w:
            sae.threshold.copy_(w["threshold"].flatten()[0])
    return sae.eval()


def _load_sparsify(folder: Path) -> SparseAutoencoder:
    """A sparsify ``SparseCoder.save_to_disk`` folder, read by sparsify itself."""
    from sparsify import SparseCoder

    raw = json.loads((folder / CFG).read_text())
    unsupported = {key: raw.get(key) for key in ("activation", "transcode", "skip_connection")
                   if raw.get(key) not in (None, False, "topk")}
    if unsupported:
        raise IrlensError(f"{folder}: sparsify options {unsupported} are not supported; "
                          "irlens reads plain TopK sparse coders")
    coder = SparseCoder.load_from_disk(folder)
    d_in, width = coder.d_in, coder.num_latents
    if width % d_in:
        raise IrlensError(f"{folder}: width {width} is not a multiple of d_in {d_in}")
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, expansion_factor=width // d_in,
                                      k=coder.cfg.k))
    sae.coder.load_state_dict(coder.state_dict())
    return sae.eval()


def geometric_median(x: Tensor, iters: int = 50, eps: float = 1e-8) -> Tensor:
    """Weiszfeld's geometric median of the rows of ``x`` (the decoder-bias initialisation
    of Bricken et al., 2023)."""
    median = x.median(dim=0).values
    for _ in range(iters):
        dist = (x - median).norm(dim=1).clamp_min(eps)
        w = 1 / dist
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - median).norm() < 1e-6 * (median.norm() + eps):
            return new
        median = new
    return median
