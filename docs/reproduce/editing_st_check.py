"""Check irlens's measured ranks of rank-one edits with plain sentence-transformers.

For the first N requests of a kind (the table's requests: seed 0, full corpus, 128
tokens, layer 5), fit the edit alone, save the edited model, load it with
``SentenceTransformer`` and rank the whole corpus with its own ``encode``; print and write
both ranks. Usage:

    python docs/reproduce/editing_st_check.py ../shared/data/scifact insert 3 OUT.json
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
    model = load_model("default", device="cpu", max_length=128)
    dataset = load_dataset(data, split="test")
    check(model, dataset, EditBench(model, dataset, progress=True), kind, n, out)


def check(model, dataset, bench: EditBench, kind: str, n: int, out: str | Path) -> list[dict]:
    """Fit, measure, save and re-rank with sentence-transformers the first ``n`` requests."""
    from sentence_transformers import SentenceTransformer

    config = EditConfig(editor="rome", kind=kind, n=n, layer=5)
    requests = make_requests(model, dataset, kind, n, seed=0, ranking=bench.before)
    editor = _editor(config, model, dataset, bench)
    rows = []
    for request in requests:
        edit = editor.fit(model, [request])
        measured = bench.measure(edit, [request])[0]
        with tempfile.TemporaryDirectory() as tmp:
            edit.save_model(model, Path(tmp) / "edited")
            st = SentenceTransformer(str(Path(tmp) / "edited"), device="cpu")
            st.max_seq_length = 128
            docs = st.encode(dataset.doc_texts(), batch_size=64, convert_to_tensor=True,
                             show_progress_bar=True)
            query = st.encode([request.query], convert_to_tensor=True)
        scores = (query @ docs.T)[0]
        target = scores[dataset.doc_ids.index(request.doc_id)]
        st_rank = 1 + int((scores > target).sum())
        rows.append({"kind": kind, "query_id": request.query_id, "doc_id": request.doc_id,
                     "rank_before": measured["rank_before"],
                     "irlens_rank_after": measured["rank_after"],
                     "sentence_transformers_rank_after": st_rank})
        print(rows[-1], flush=True)
        Path(out).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
