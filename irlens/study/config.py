"""The study config: YAML read with line numbers, checked against declared schemas.

A config names the model, the datasets and the sections to run, with their sizes,
seeds and device (see :data:`EXAMPLE`, written by ``irlens study --init``). Every
mistake is reported as one line naming the file and line: ``study.yaml line 12:
sections.neurons.triplets must be an integer, got 'thirty'``. The schemas are data
(:class:`Field`), declared by each section (:mod:`irlens.study.sections`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from irlens.errors import IrlensError
from irlens.options import common as options

__all__ = ["DatasetSpec", "Field", "StudySpec", "load_spec", "parse_spec"]

KINDS = ("int", "float", "str", "bool", "list[str]", "list[float]", "list[int]")


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: its type (``int``, ``float``, ``str``, ``bool``, ``list[...]``),
    default (``REQUIRED`` when it must be given), help text, allowed values and bounds."""

    kind: str
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    optional: bool = False  # None allowed
    rule: Any = None  # an option's check (irlens.options), shared with the CLI

    @classmethod
    def of(cls, option: Any, **changes: Any) -> Field:
        """The field of a CLI option (:mod:`irlens.options`): its type, default, help and
        check, written once there."""
        kind = {"path": "str"}.get(option.kind, option.kind)
        values = {"kind": kind, "default": option.default, "help": option.help.rstrip("."),
                  "optional": option.default is None, "rule": option.check, **changes}
        return cls(**values)

    def check(self, value: Any) -> str | None:
        """A complaint about ``value``, or None when it fits."""
        if value is None:
            return None if self.optional else f"must be {_article(self.kind)}, got nothing"
        if self.kind.startswith("list["):
            if not isinstance(value, list):
                return f"must be a list of {self.kind[5:-1]}s, got {value!r}"
            inner = Field(self.kind[5:-1], None, "", self.choices, self.minimum)
            for item in value:
                problem = inner.check(item)
                if problem:
                    return f"item {item!r} {problem.removeprefix('must be ')}" \
                        if problem.startswith("must be") else problem
            return None
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "str": isinstance(value, str), "bool": isinstance(value, bool)}[self.kind]
        if not ok:
            return f"must be {_article(self.kind)}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum:g}, got {value!r}"
        if self.rule is not None:
            problem = self.rule(value)
            if problem and not problem.startswith("must"):
                return f"is refused: {problem}"
            return problem
        return None


REQUIRED = object()


def _article(kind: str) -> str:
    names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
    return names.get(kind, f"a {kind}")


DATASET_FIELDS = {
    "path": Field("str", REQUIRED, "BEIR folder (corpus.jsonl, queries.jsonl, qrels/), "
                  "relative to this file"),
    "split": Field.of(options.SPLIT, help="qrels split"),
    "max_docs": Field.of(options.MAX_DOCS, help="keep judged docs plus distractors up to N"),
    "max_queries": Field.of(options.MAX_QUERIES, help="keep the first N judged queries"),
}
TOP_FIELDS = {
    "name": Field("str", "study", "title of the report"),
    "model": Field.of(options.MODEL, default=REQUIRED, rule=None,
                      help="'default', a model folder or a Hugging Face id"),
    "device": Field.of(options.DEVICE, help="where models run"),
    "seed": Field.of(options.SEED, help="sampling seed of every section"),
    "batch_size": Field.of(options.BATCH_SIZE, help="texts per forward pass"),
}


@dataclasses.dataclass
class DatasetSpec:
    name: str
    path: str
    split: str = "test"
    max_docs: int | None = None
    max_queries: int | None = None

    def load(self):
        from irlens.data import load_dataset

        return load_dataset(self.path, split=self.split, max_docs=self.max_docs,
                            max_queries=self.max_queries)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StudySpec:
    """A validated study config: top-level settings, datasets, and each section's
    parameters (defaults filled in, ``datasets`` resolved to names)."""

    name: str
    model: str
    device: str
    seed: int
    batch_size: int
    datasets: dict[str, DatasetSpec]
    sections: dict[str, dict[str, Any]]
    file: str = "study.yaml"
    text: str = ""
    lines: dict[tuple, int] = dataclasses.field(default_factory=dict, repr=False)

    def line(self, *path: Any) -> int:
        """The line of ``path`` (e.g. ``("sections", "neurons", "keep")``), or its parent's."""
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: tuple, message: str) -> IrlensError:
        return IrlensError(f"{self.file} line {self.line(*path)}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "device": self.device,
                "seed": self.seed, "batch_size": self.batch_size,
                "datasets": {k: v.to_dict() for k, v in self.datasets.items()},
                "sections": self.sections}


def _yaml_with_lines(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """Plain Python values and the line of every mapping key / list item (1-based)."""
    import yaml

    loader = yaml.SafeLoader(text)
    lines: dict[tuple, int] = {}
    try:
        node = loader.get_single_node()

        def build(node, path: tuple):
            if isinstance(node, yaml.MappingNode):
                out = {}
                for key_node, value_node in node.value:
                    key = loader.construct_object(key_node, deep=True)
                    if key in out:
                        raise IrlensError(f"{file} line {key_node.start_mark.line + 1}: "
                                          f"'{key}' is given twice; keep one")
                    lines[(*path, key)] = key_node.start_mark.line + 1
                    out[key] = build(value_node, (*path, key))
                return out
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    lines[(*path, i)] = item.start_mark.line + 1
                    items.append(build(item, (*path, i)))
                return items
            return loader.construct_object(node, deep=True)

        data = build(node, ()) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise IrlensError(f"{file}{where}: not valid YAML ({problem}); fix the syntax") from None
    finally:
        loader.dispose()
    return data, lines


def _fields(values: Any, schema: Mapping[str, Field], path: tuple, spec: StudySpec,
            what: str) -> dict[str, Any]:
    """Check a mapping against ``schema``: unknown keys, wrong types, missing values."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise spec.error(path, f"{what} must be a mapping of fields, got {values!r}")
    out = {}
    for key, value in values.items():
        if key not in schema:
            raise spec.error((*path, key), f"unknown field '{key}' in {what}; use "
                             f"{', '.join(schema)}")
        problem = schema[key].check(value)
        if problem:
            dotted = ".".join(str(p) for p in (*path, key))
            raise spec.error((*path, key), f"{dotted} {problem}")
    for key, field in schema.items():
        if key in values:
            out[key] = values[key]
        elif field.default is REQUIRED:
            raise spec.error(path, f"{what} needs '{key}' ({field.help})")
        else:
            out[key] = field.default
    return out


def parse_spec(text: str, file: str = "study.yaml", base: Path | None = None,
               check_paths: bool = True) -> StudySpec:
    """Validate a study config given as YAML text (relative paths from ``base``)."""
    from irlens.study.sections import SECTIONS

    data, lines = _yaml_with_lines(text, file)
    spec = StudySpec("", "", "", 0, 0, {}, {}, file=file, text=text, lines=lines)
    if not isinstance(data, dict):
        raise spec.error((), "a study config is a mapping with model, datasets and sections; "
                         "run `irlens study --init FILE` for an example")
    allowed = {*TOP_FIELDS, "datasets", "sections"}
    for key in data:
        if key not in allowed:
            raise spec.error((key,), f"unknown field '{key}'; use {', '.join(sorted(allowed))}")
    top = _fields({k: v for k, v in data.items() if k in TOP_FIELDS}, TOP_FIELDS, (), spec,
                  "the study")
    spec.name, spec.model, spec.device = top["name"], top["model"], top["device"]
    spec.seed, spec.batch_size = top["seed"], top["batch_size"]
    datasets = data.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise spec.error(("datasets",), "datasets must map names to {path: BEIR folder}, e.g. "
                         "'datasets: {scifact: {path: data/scifact}}'")
    for name, values in datasets.items():
        if isinstance(values, str):
            values = {"path": values}
        params = _fields(values, DATASET_FIELDS, ("datasets", name), spec, f"dataset '{name}'")
        path = Path(params["path"]).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        if check_paths and not (path.is_dir() and (path / "qrels").is_dir()):
            raise spec.error(("datasets", name, "path"), f"dataset '{name}': no BEIR folder at "
                             f"{path} (it needs corpus.jsonl, queries.jsonl, qrels/); fix the "
                             "path")
        spec.datasets[name] = DatasetSpec(name, str(path), params["split"], params["max_docs"],
                                          params["max_queries"])
    sections = data.get("sections")
    if not isinstance(sections, dict) or not sections:
        raise spec.error(("sections",), f"sections must map section names to their settings; "
                         f"use {', '.join(SECTIONS)}")
    for name, values in sections.items():
        if name not in SECTIONS:
            raise spec.error(("sections", name), f"unknown section '{name}'; use "
                             f"{', '.join(SECTIONS)}")
        section = SECTIONS[name]
        schema = {**section.fields, "datasets": Field("list[str]", None, "datasets to run on "
                                                      "(default: all)", optional=True)}
        params = _fields(values, schema, ("sections", name), spec, f"section '{name}'")
        chosen = params["datasets"] or list(spec.datasets)
        for i, ds in enumerate(chosen):
            if ds not in spec.datasets:
                raise spec.error(("sections", name, "datasets", i), f"section '{name}' names "
                                 f"dataset '{ds}', which is not under datasets (declared: "
                                 f"{', '.join(spec.datasets)})")
        params["datasets"] = chosen
        for path, problem in section.check(params):
            raise spec.error(("sections", name, *path), problem)
        spec.sections[name] = params
    for name in spec.sections:  # sections that need others
        for need in SECTIONS[name].needs:
            if need not in spec.sections:
                raise spec.error(("sections", name), f"section '{name}' needs section "
                                 f"'{need}'; add it under sections")
            missing = [d for d in spec.sections[name]["datasets"]
                       if d not in spec.sections[need]["datasets"]]
            if missing:
                raise spec.error(("sections", name), f"section '{name}' on '{missing[0]}' "
                                 f"needs section '{need}' on it; add '{missing[0]}' to "
                                 f"sections.{need}.datasets")
    return spec


def load_spec(path: str | Path, check_paths: bool = True) -> StudySpec:
    """Read and validate a study config file."""
    path = Path(path)
    if not path.is_file():
        raise IrlensError(f"no study config at {path}; write an example with "
                          f"`irlens study --init {path}`")
    return parse_spec(path.read_text(), path.name, path.resolve().parent, check_paths)
