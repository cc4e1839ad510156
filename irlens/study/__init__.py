"""``irlens study``: one config, every section as resumable jobs, one offline report.

>>> from irlens.study import load_spec, plan_study, run_study
>>> spec = load_spec("study.yaml")                 # validated; errors name the line
>>> plan_study(spec, "results/study").to_dict()    # jobs, done, work left
>>> run = run_study(spec, "results/study")         # resumes; executor=WorkerPool(spec)
>>> run.report                                     # results/study/report.html

Sections (:data:`irlens.study.sections.SECTIONS`): ``evaluate``, ``faithfulness``,
``neurons``, ``prune``; each is a small adapter over the public API of its analysis.
"""

from importlib.resources import files

from irlens.study.config import DatasetSpec, Field, StudySpec, load_spec, parse_spec
from irlens.study.jobs import Context, Job, StudyResult
from irlens.study.runner import Plan, StudyRun, check_model, plan_study, run_study
from irlens.study.sections import SECTIONS, Section, SectionReport

__all__ = ["EXAMPLE", "SECTIONS", "Context", "DatasetSpec", "Field", "Job", "Plan",
           "Section", "SectionReport", "StudyResult", "StudyRun", "StudySpec", "check_model",
           "load_spec", "parse_spec", "plan_study", "run_study"]

EXAMPLE = files("irlens.study").joinpath("example.yaml").read_text()
