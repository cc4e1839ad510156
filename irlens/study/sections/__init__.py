"""Study sections: one small adapter per analysis, registered by name.

A section declares its config fields (:class:`irlens.study.config.Field`), plans its
jobs wave by wave (:meth:`Section.plan`, a generator: a wave may use the results of the
previous one, e.g. NIG shards after the triplets), runs one job (:meth:`Section.run`,
on the driver or a Ray worker) and summarises its results for the report
(:meth:`Section.report`). To add one (probe, activations, edit, sae...): subclass
:class:`Section` in a module of this package, call the analysis's public Python API
from ``run``, and add an instance to :data:`SECTIONS` (order = run order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

from irlens.study.config import Field
from irlens.study.jobs import Context, Job, StudyResult

__all__ = ["SECTIONS", "Section", "SectionReport", "register"]


@dataclasses.dataclass
class SectionReport:
    """What the report shows for one section."""

    title: str
    finding: str
    columns: list[str]
    rows: list[dict[str, Any]]  # cell: a number, a string, or {"mean", "lo", "hi"}
    control: str
    plots: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)  # caption, PNG
    note: str = ""


class Section:
    """Base class of study sections (see the module docstring)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    fields: ClassVar[dict[str, Field]] = {}
    needs: ClassVar[tuple[str, ...]] = ()  # sections whose results this one uses
    needs_bi_encoder: ClassVar[bool] = False  # True: refused for a cross-encoder

    def check(self, params: dict[str, Any]) -> list[tuple[tuple, str]]:
        """Cross-field problems: (field path under the section, one-line message)."""
        return []

    def cross_encoder_field(self, params: dict[str, Any]) -> str | None:
        """The field that makes this section need a cross-encoder, if any."""
        return None

    def plan(self, ctx: Context, dataset: str, params: dict[str, Any]
             ) -> Iterator[list[Job]]:
        """Yield waves of jobs; results of a wave are in ``ctx.results`` after it."""
        raise NotImplementedError

    def estimate(self, ctx: Context, dataset: str, params: dict[str, Any],
                 planned: list[Job]) -> tuple[int, float]:
        """(jobs, work) still to come after the ``planned`` ones, for waves the plan
        cannot list yet (they need results that do not exist)."""
        return 0, 0.0

    def run(self, ctx: Context, job: Job) -> StudyResult:
        raise NotImplementedError

    def report(self, ctx: Context, params: dict[str, Any],
               results: dict[str, list[StudyResult]]) -> SectionReport:
        raise NotImplementedError

    def result(self, ctx: Context, job: Job, **fields: Any) -> StudyResult:
        return StudyResult(manifest=ctx.manifest(job), section=job.section,
                           dataset=job.dataset, part=job.part, **fields)


SECTIONS: dict[str, Section] = {}


def register(section: Section) -> Section:
    """Add ``section`` to the registry (sections run in registration order)."""
    SECTIONS[section.name] = section
    return section


def _register_builtins() -> None:
    from irlens.study.sections.activations import ActivationsSection
    from irlens.study.sections.evaluate import EvaluateSection
    from irlens.study.sections.faithfulness import FaithfulnessSection
    from irlens.study.sections.neurons import NeuronsSection
    from irlens.study.sections.probe import ProbeSection
    from irlens.study.sections.prune import PruneSection

    for cls in (EvaluateSection, FaithfulnessSection, NeuronsSection, PruneSection,
                ProbeSection, ActivationsSection):
        register(cls())


_register_builtins()
