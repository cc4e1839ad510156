"""Edit what a retriever can find, and measure the edit by retrieval.

>>> from irlens.editing import EditBench, RankOneEditor, cached_covariance, make_requests
>>> bench = EditBench(model, dataset)                       # the unedited ranking
>>> requests = make_requests(model, dataset, "insert", 5, ranking=bench.before)
>>> editor = RankOneEditor(cached_covariance(model, dataset, layer=5), layer=5)
>>> edit = editor.fit(model, requests[:1])
>>> with edit.applied(model):                               # restored on exit
...     ...
>>> bench.measure(edit, requests[:1])                       # efficacy, locality, ...
"""

from irlens.editing.covariance import cached_covariance, key_covariance
from irlens.editing.edit import Edit
from irlens.editing.editors import (
    EDITORS,
    FineTuneEditor,
    RankOneEditor,
    make_editor,
    rank_one_update,
)
from irlens.editing.measures import EditBench
from irlens.editing.requests import KINDS, EditRequest, make_requests
from irlens.editing.study import EditConfig, run_edits, summarise

__all__ = ["EDITORS", "KINDS", "Edit", "EditBench", "EditConfig", "EditRequest",
           "FineTuneEditor", "RankOneEditor", "cached_covariance", "key_covariance",
           "make_editor", "make_requests", "rank_one_update", "run_edits", "summarise"]
