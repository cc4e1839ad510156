"""The retrieval objective every editor optimises: move one document past its rivals.

For an insert the document must score above the 5th best of the query's current top 30
(so that it lands in the top 10 with room to spare); for a remove it must score below the
10th best of the query's other top-40 documents (so that at least ten rank above it).
Both sides are encoded with the edit in place, because a shared-tower edit moves
documents as well as queries. The loss is a smooth hinge (softplus with temperature
``tau``) on the signed gap to that bar.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from irlens.editing.requests import EditRequest
from irlens.models import BiEncoder

__all__ = ["INSERT_BAR", "REMOVE_BAR", "gaps", "hinge"]

INSERT_BAR = 5  # an inserted document must beat the 5th best rival
REMOVE_BAR = 10  # a removed one must fall below the 10th best


Encode = Callable[[int, EditRequest], tuple[torch.Tensor, torch.Tensor]]


def gaps(model: BiEncoder, requests: list[EditRequest], encode: Encode | None = None
         ) -> torch.Tensor:
    """Signed distance of each request to its bar [n]; > 0 means met. ``encode(i,
    request)`` may give the query's vector [1, dim] and the documents' [1 + rivals, dim]
    (e.g. from cached layer states); by default both are embedded from the start."""
    out = []
    for i, r in enumerate(requests):
        if encode is None:
            q = model.embed([r.query], "query")
            d = model.embed([r.doc, *r.competitors], "doc")
        else:
            q, d = encode(i, r)
        scores = model.similarity(q, d)[0]
        rivals = scores[1:]
        k = min(INSERT_BAR if r.kind == "insert" else REMOVE_BAR, len(rivals))
        bar = torch.topk(rivals, k).values[-1]
        out.append(scores[0] - bar if r.kind == "insert" else bar - scores[0])
    return torch.stack(out)


def hinge(gap: torch.Tensor, margin: float = 0.02, tau: float = 0.02) -> torch.Tensor:
    """Mean smooth hinge ``tau * softplus((margin - gap) / tau)``."""
    return (tau * F.softplus((margin - gap) / tau)).mean()
