"""medseg's errors survive pickling (an error raised in a worker process must reach its parent intact)."""

from __future__ import annotations

import pickle

from medseg.errors import MedsegConfigError, MedsegInputError


def test_errors_round_trip_through_pickle() -> None:
    error = pickle.loads(pickle.dumps(MedsegInputError("scan.nii.gz", "file is empty (0 bytes)")))
    assert isinstance(error, MedsegInputError)
    assert (error.path, error.problem, str(error)) == ("scan.nii.gz", "file is empty (0 bytes)", "scan.nii.gz: file is empty (0 bytes)")
    assert str(pickle.loads(pickle.dumps(MedsegInputError(None, "no input")))) == "no input"
    assert str(pickle.loads(pickle.dumps(MedsegConfigError("x.yaml: bad")))) == "x.yaml: bad"
