"""medseg.inference: output adapters, sliding-window prediction, geometry restore, output files."""

from medseg.inference import nested  # noqa: F401  (registers the nested-class adapters)
