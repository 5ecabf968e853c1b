"""Planning a pipeline from a dataset (nnU-Net-style experiment planning) and checking a dataset before training.

:mod:`~medseg.planning.fingerprint` reads the cases once, :mod:`~medseg.planning.planner` holds the rules,
:mod:`~medseg.planning.memory` the network topology and step memory, :mod:`~medseg.planning.methods` the
per-method plans, :mod:`~medseg.planning.render` the commented YAML and :mod:`~medseg.planning.plan` ties them
together (``medseg plan``). The floor of ``planning`` is the engine's: it reads data and builds networks, and
neither imports the other.
"""

from __future__ import annotations
