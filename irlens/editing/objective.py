"""The retrieval objective every editor optimises: move one document past its rivals.

For an insert the document must score above the median of the query's current top 10
(so that it lands in the top 10 with room to spare); for a remove it must score below the
median of the documents now ranked 11-20. Both sides are encoded with the edit in
place, because a shared-tower edit moves documents as well as queries. The loss is a
smooth hinge (softplus with temperature ``tau``) on the signed gap to that bar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irlens.editing.requests import EditRequest
from irlens.models import BiEncoder

__all__ = ["gaps", "hinge"]


def gaps(model: BiEncoder, requests: list[EditRequest]) -> torch.Tensor:
    """Signed distance of each request to its bar [n]; > 0 means met."""
    out = []
    for r in requests:
        q = model.embed([r.query], "query")
        d = model.embed([r.doc, *r.competitors], "doc")
        scores = model.similarity(q, d)[0]
        bar = scores[1:].median()
        out.append(scores[0] - bar if r.kind == "insert" else bar - scores[0])
    return torch.stack(out)


def hinge(gap: torch.Tensor, margin: float = 0.02, tau: float = 0.02) -> torch.Tensor:
    """Mean smooth hinge ``tau * softplus((margin - gap) / tau)``."""
    return (tau * F.softplus((margin - gap) / tau)).mean()
