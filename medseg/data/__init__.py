"""medseg.data."""
