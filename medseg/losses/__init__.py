"""medseg.losses."""
