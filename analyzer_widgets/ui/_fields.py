"""A panel field per declared setting (config.py's ``setting(..., panel="Label")``), and the
value a field holds as the setting's check takes it. The sweep's settings, the decision's
budget and the plan's settings are all made here, so each setting is declared once."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

import ipywidgets as w

from analyzer_widgets.config import UNSET, Setting, declared, default_of, shown_default


def declaration_of(cls: type, name: str) -> Setting:
    """The declaration of ``cls``'s setting ``name``."""
    return next(s for f, s in declared(cls) if f.name == name)


def as_text(value: Any) -> str:
    """A setting's value as its text field shows it."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def setting_widget(f: dataclasses.Field[Any], declaration: Setting, given: Any) -> w.ValueWidget:
    """A field for one setting, by its default's type; ``given``: the value the panel was made with."""
    default = default_of(f)
    style = {"description_width": "110px"}
    if isinstance(default, enum.Enum):
        options = [m.value for m in type(default)]
        chosen = as_text(given if given is not UNSET else default)
        kind = w.ToggleButtons if len(options) <= 3 else w.Dropdown
        widget: w.ValueWidget = kind(options=options, value=chosen, description=declaration.panel, style=style)
        if kind is w.ToggleButtons:
            # ipywidgets 8 draws toggle buttons as a block: their label would sit above them
            widget.layout.display, widget.layout.align_items = "flex", "center"
    elif isinstance(default, bool):
        widget = w.Checkbox(value=bool(default if given is UNSET else given), description=declaration.panel)
    else:
        widget = w.Text(value="" if given is UNSET else as_text(given),
                        placeholder=shown_default(f, declaration).replace("`", ""),
                        description=declaration.panel, style=style, layout=w.Layout(width="420px"))
    widget.tooltip = declaration.help.replace("`", "")
    return widget


def widget_value(widget: w.ValueWidget, declaration: Setting) -> Any:
    """What a field holds as the setting's check takes it; UNSET for an empty text field."""
    value = widget.value
    if not isinstance(widget, w.Text):
        return value
    text = value.strip()
    if not text:
        return UNSET
    if declaration.repeat:  # one text field for a repeatable flag: its items separated by commas
        return declaration.parse([part for part in text.split(",") if part.strip()]) if declaration.parse else text
    return declaration.parse(text) if declaration.parse else text
