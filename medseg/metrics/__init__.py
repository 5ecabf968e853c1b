"""medseg.metrics."""
