"""Sparse autoencoders for retrievers: cache vectors, train TopK/BatchTopK SAEs, measure
their fidelity by retrieval, name and score their latents, and steer searches with them."""

from irlens.sae.cache import Activations, cache_activations, cache_array
from irlens.sae.model import SAEConfig, SparseAutoencoder, load_sae
from irlens.sae.train import TrainConfig, train_sae

__all__ = ["Activations", "SAEConfig", "SparseAutoencoder", "TrainConfig", "cache_activations",
           "cache_array",
           "load_sae", "train_sae"]
