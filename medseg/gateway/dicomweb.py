"""Pull a series from a DICOMweb server (QIDO-RS to find it, WADO-RS to fetch it) into a folder.

What ``medseg predict --dicomweb URL --study UID [--series UID]`` runs (:mod:`medseg.gateway.remote`); pushing
the SEG back is :func:`medseg.gateway.sender.send`.
"""

from __future__ import annotations

from pathlib import Path

from medseg.errors import MedsegInputError
from medseg.gateway.receiver import IMAGE_SOP_CLASSES, valid_uid
from medseg.gateway.sender import SendError, dicomweb_client
from medseg.io.atomic import atomic_path

_SERIES_UID, _MODALITY, _COUNT = "0020000E", "00080060", "00201209"


def find_image_series(url: str, study_uid: str, token_env: str | None = None, verify: bool | str = True) -> list[dict[str, object]]:
    """QIDO-RS: the series of a study as ``{"series_uid", "modality", "instances"}``, most instances first.

    ``verify``: True checks HTTPS against the system's trust store, a path against that CA bundle only.
    """
    import requests

    try:
        found = dicomweb_client(url, token_env, verify=verify).search_for_series(study_uid, fields=[_COUNT])
    except (requests.RequestException, SendError) as exc:
        raise MedsegInputError(url, f"QIDO-RS search of study {study_uid} failed ({' '.join(str(exc).split())[:200]})") from exc
    value = lambda item, tag: (item.get(tag, {}).get("Value") or [""])[0]  # noqa: E731
    series = [{"series_uid": value(s, _SERIES_UID), "modality": value(s, _MODALITY), "instances": int(value(s, _COUNT) or 0)} for s in found]
    return sorted(series, key=lambda s: -int(s["instances"]))


def fetch_series(
    url: str, study_uid: str, series_uid: str | None, folder: Path, token_env: str | None = None, verify: bool | str = True,
) -> list[Path]:
    """WADO-RS: write the image instances of a series (default: the study's largest image series) into ``folder``
    as ``SOP_UID.dcm`` (atomically); returns their paths. ``verify`` as for :func:`find_image_series`.

    Raises:
        MedsegInputError: no such study/series, no image series, or the server failed (one line).
    """
    import requests

    if series_uid is None:
        found = find_image_series(url, study_uid, token_env, verify)
        if not found:
            raise MedsegInputError(url, f"study {study_uid} not found (QIDO-RS lists no series of it)")
        images = [s for s in found if s["modality"] in ("CT", "MR", "PT")]
        if not images:
            raise MedsegInputError(url, f"study {study_uid} has no CT, MR or PET series")
        series_uid = str(images[0]["series_uid"])
    try:
        datasets = dicomweb_client(url, token_env, verify=verify).retrieve_series(study_uid, series_uid)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        why = "not found" if code == 404 else f"HTTP {code}"
        raise MedsegInputError(url, f"WADO-RS of series {series_uid} of study {study_uid} failed: {why}") from exc
    except (requests.RequestException, SendError) as exc:
        raise MedsegInputError(url, f"WADO-RS of series {series_uid} failed ({' '.join(str(exc).split())[:200]})") from exc
    paths = []
    for ds in datasets:
        if ds.SOPClassUID not in IMAGE_SOP_CLASSES or not valid_uid(str(ds.SOPInstanceUID)):
            continue
        path = Path(folder) / f"{ds.SOPInstanceUID}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    if not paths:
        raise MedsegInputError(url, f"series {series_uid} of study {study_uid} holds no image instances")
    return paths


__all__ = ["fetch_series", "find_image_series"]
