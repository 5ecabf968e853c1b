"""medseg.inference: the one window engine (sliding window, TTA, head decoding), geometry restore, the
predictor, output files and registration inference. Used by ``medseg predict`` and by training validation.

Floors: ``inference`` imports ``model`` and below, never ``engine`` (training) or ``cli``.
"""
