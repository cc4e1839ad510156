"""A cheaper check of real rank-one edits with plain sentence-transformers.

For the first N requests of a kind (the table's: seed 0, full corpus, 128 tokens, layer
5), fit the edit (its own rivals only, as a bench-less ``irlens edit --save`` does),
save the edited model, and encode the query and the query's unedited top 100 plus the
edited document with both irlens (the edit applied) and ``SentenceTransformer``'s own
``encode`` on the saved folder; print the largest vector difference and the document's
rank among those 101 by each. Usage:

    python docs/reproduce/editing_st_sample.py ../shared/data/scifact insert 1 OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from irlens.data import load_dataset
from irlens.editing import EditBench, make_requests
from irlens.editing.study import EditConfig, _editor
from irlens.models import load_model


def main(data: str, kind: str, n: int, out: str) -> None:
    from sentence_transformers import SentenceTransformer

    model = load_model("default", device="cpu", max_length=128)
    dataset = load_dataset(data, split="test")
    bench = EditBench(model, dataset)  # the unedited ranking, from the embedding cache
    requests = make_requests(model, dataset, kind, n, seed=0, ranking=bench.before)
    editor = _editor(EditConfig(editor="rome", kind=kind, n=n, layer=5), model, dataset)
    rows = []
    for request in requests:
        ids = [d for d in bench.before.top(request.query_id, 100) if d != request.doc_id]
        texts = dataset.doc_texts([request.doc_id, *ids])
        edit = editor.fit(model, [request])
        with edit.applied(model):
            ours_q, ours_d = model.encode_queries([request.query]), model.encode_docs(texts)
        with tempfile.TemporaryDirectory() as tmp:
            edit.save_model(model, Path(tmp) / "edited")
            st = SentenceTransformer(str(Path(tmp) / "edited"), device="cpu")
            st.max_seq_length = 128
            st_q = st.encode([request.query], convert_to_tensor=True)
            st_d = st.encode(texts, batch_size=32, convert_to_tensor=True)
        ranks = [1 + int((s[0, 1:] > s[0, 0]).sum()) for s in (ours_q @ ours_d.T,
                                                              st_q @ st_d.T)]
        rows.append({"kind": kind, "query_id": request.query_id, "doc_id": request.doc_id,
                     "rank_before_full_corpus": request.rank_before,
                     "irlens_rank_among_101": ranks[0], "st_rank_among_101": ranks[1],
                     "max_abs_vector_difference": float(max(
                         (ours_d - st_d).abs().max(), (ours_q - st_q).abs().max()))})
        print(rows[-1], flush=True)
        Path(out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
