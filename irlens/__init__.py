"""irlens: mechanistic interpretability for neural retrieval models.

>>> import irlens
>>> model = irlens.load_model("default")          # all-MiniLM-L6-v2, offline
>>> model.score(["what is irlens"], ["irlens opens up retrievers"])
"""

from irlens.errors import IrlensError
from irlens.models import BiEncoder, CrossEncoder, Retriever, load_model

__all__ = ["BiEncoder", "CrossEncoder", "IrlensError", "Retriever", "load_model"]
__version__ = "0.1.0"
