"""medseg as a node in the hospital network (``medseg gateway``): receive series from a PACS over DICOM
(C-STORE, or DICOMweb STOW-RS), segment each complete series with the model package its routing rule names, and send the
DICOM SEG back (C-STORE or STOW-RS), with a persistent SQLite job queue so that nothing is lost.

Modules: :mod:`~medseg.gateway.config` (``gateway.yaml``), :mod:`~medseg.gateway.receiver` (C-STORE SCP),
:mod:`~medseg.gateway.queue` (SQLite), :mod:`~medseg.gateway.router` (rules), :mod:`~medseg.gateway.jobs`
(the one call into medseg's prediction), :mod:`~medseg.gateway.sender` (C-STORE SCU, STOW-RS),
:mod:`~medseg.gateway.dicomweb` (QIDO/WADO pulls), :mod:`~medseg.gateway.stow` (STOW-RS receiver),
:mod:`~medseg.gateway.monitor` (``/health``, ``/jobs``), :mod:`~medseg.gateway.service` (all of it together), and
:mod:`~medseg.gateway.remote` (``medseg predict --dicomweb ... --send-to ...``).
"""
