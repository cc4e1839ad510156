"""One table of options: each option of each command is declared once.

An :class:`Option` holds an option's name, type, default, help text, check (a one-line
complaint that names the problem and the fix) and whether it changes results (the
options that do are what an output folder records, so a rerun with others is refused).
A :class:`Table` is one command's options plus the rules that tie several together.
The ``irlens`` commands take their defaults and help from the tables (``TABLE.cli(name)``)
and check every value with :func:`checked` before any data or model loads and before any
output is written; the study config (:mod:`irlens.study.config`) runs the same checks on
the options it shares. Checks that need the model (a layer index, a latent index) read
its config only (:func:`model_layers`), never its weights.
"""

from __future__ import annotations

from irlens.options.core import (
    Option,
    Table,
    at_least,
    below,
    check_out,
    checked,
    comma_list,
    model_layers,
    one_of,
    positive,
)

__all__ = ["Option", "Table", "at_least", "below", "check_out", "checked", "comma_list",
           "model_layers", "one_of", "positive"]
