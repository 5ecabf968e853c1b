"""A plan as pipeline YAML: block style for sections (and ``stages:`` lists), flow style for values, each value's reason as a comment."""

from __future__ import annotations

from typing import Any

import yaml

from medseg.planning.planner import Plan, Planned


def _flow(value: Any) -> str:
    """One value on one line (``[1, 2]``, ``{0: background}``, ``0.5``, ``null``)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix(" ...").strip()


def _lines(node: dict[str, Any], indent: int) -> list[str]:
    out = []
    pad = "  " * indent
    for key, child in node.items():
        if isinstance(child, dict) and child and all(isinstance(k, str) for k in child):
            out.append(f"{pad}{key}:")
            out += _lines(child, indent + 1)
            continue
        if isinstance(child, list) and child and all(isinstance(item, dict) for item in child):  # stages: block list
            out.append(f"{pad}{key}:")
            for item in child:
                lines = _lines(item, indent + 2)
                out += [f"{pad}  - {lines[0].lstrip()}", *lines[1:]]
            continue
        planned = child if isinstance(child, Planned) else Planned(child)
        value = planned.value
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value) and any(isinstance(v, Planned) for v in value.values()):
            out.append(f"{pad}{key}:")
            out += _lines(value, indent + 1)
            continue
        line = f"{pad}{key}: {_flow(value)}"
        if planned.reason:
            line += f"  # {' '.join(planned.reason.split())}"
        out.append(line)
    return out


def render_yaml(plan: Plan, header: list[str] | None = None) -> str:
    """The pipeline YAML text of ``plan`` (header lines become leading comments)."""
    lines = [f"# {h}" for h in header or []]
    return "\n".join([*lines, *_lines(plan.tree, 0)]) + "\n"


__all__ = ["render_yaml"]
