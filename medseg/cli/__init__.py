"""medseg.cli."""
