"""Which modality is which file: order checks for multi-modal cases by file name.

A model package declares its modalities in order (``medseg.json`` ``modalities``, e.g. ``fat, inn, opp,
wat`` for IVD-Net or ``T1, T1ce, T2, FLAIR``). The files of one case are given in that order (one ``-i``
per modality). Because a swapped pair of co-registered images is silently wrong otherwise, the order is
checked wherever the file names allow it:

- A file *names* a modality when one of the tokens of its name (split on ``_``, ``-``, ``.`` and spaces,
  case-insensitive; adjacent tokens are also joined, so ``in-phase`` gives ``inphase``) equals the
  modality's name or one of its common aliases (:data:`ALIASES`: ``water`` for ``wat``, ``inphase`` for
  ``inn``, ``t1c``/``t1gd`` for ``t1ce``, ...).
- A file that names exactly one declared modality must stand at that modality's position; otherwise the
  case is refused with an error naming the file, what its name says and the expected order.
- When every file of a multi-modal case ends in a four-digit channel number (nnU-Net's ``case_0000.nii.gz``,
  ``case_0001.nii.gz``, ...), that number fixes the file's channel, as in nnU-Net: ``_0002`` must be the
  third image, and a number past the last modality is refused. (A single-modality case, or a case whose
  files are not all named so, is not checked: ``liver_0003`` there is a case number.)
- Files whose names mention neither a declared modality nor a channel number, or several modalities, are
  not checked: their position is their modality.

:func:`order_by_names` implements explicit naming (``medseg predict --modalities``): the user says which
modality each file is, and the files are put into the package's order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from medseg.errors import MedsegInputError
from medseg.io.image_io import case_name, is_image_file

#: Spellings that name the same modality in file names (normalised: lower case, letters and digits only).
ALIASES: tuple[frozenset[str], ...] = (
    frozenset({"wat", "water"}),
    frozenset({"fat"}),
    frozenset({"inn", "inphase", "ip"}),
    frozenset({"opp", "opposed", "opposedphase", "oppphase", "outphase", "oop"}),
    frozenset({"t1", "t1w", "t1n"}),
    frozenset({"t1ce", "t1c", "t1gd", "t1post", "t1wce"}),
    frozenset({"t2", "t2w"}),
    frozenset({"flair", "t2flair", "t2f"}),
)
_SPLIT = re.compile(r"[^a-z0-9]+")
_CHANNEL = re.compile(r"^.+_(?P<channel>\d{4})$")


def normalise(name: str) -> str:
    """``"In-Phase"`` -> ``"inphase"``."""
    return _SPLIT.sub("", name.lower())


def spellings(modality: str) -> frozenset[str]:
    """Every normalised spelling of ``modality`` (its own name and its aliases)."""
    key = normalise(modality)
    for group in ALIASES:
        if key in group:
            return group
    return frozenset({key})


def name_tokens(path: str | Path) -> set[str]:
    """Normalised tokens of a file name (without the image extension), plus adjacent pairs joined."""
    parts = [p for p in _SPLIT.split(case_name(path).lower()) if p]
    return set(parts) | {a + b for a, b in zip(parts, parts[1:])}


def named_modality(path: str | Path, declared: Sequence[str]) -> int | None:
    """Index in ``declared`` of the one modality that ``path``'s file name names, else ``None``."""
    tokens = name_tokens(path)
    hits = [i for i, modality in enumerate(declared) if tokens & spellings(modality)]
    return hits[0] if len(hits) == 1 else None


def channel_number(path: str | Path) -> int | None:
    """nnU-Net channel of a file name: ``case_0002.nii.gz`` -> 2; ``None`` without a ``_NNNN`` ending."""
    match = _CHANNEL.match(case_name(path))
    return int(match["channel"]) if match else None


def _nnunet_named(paths: Sequence[str | Path], declared: Sequence[str]) -> bool:
    """A multi-modal case whose files all end in ``_NNNN``: nnU-Net channel naming."""
    return len(declared) > 1 and len(paths) > 1 and all(channel_number(p) is not None for p in paths)


def _check_channel(path: str | Path, position: int, declared: Sequence[str], how: str, suffix: str = "") -> None:
    """Refuse a file whose nnU-Net channel number is not ``position``."""
    channel = channel_number(path)
    if channel is None or channel == position:
        return
    order = ", ".join(f"_{i:04d} {m}" for i, m in enumerate(declared))
    if channel >= len(declared):
        raise MedsegInputError(path, f"file name ends in channel _{channel:04d} but the model has {len(declared)} channels ({order}){suffix}")
    raise MedsegInputError(
        path, f"file name says nnU-Net channel _{channel:04d} ('{declared[channel]}') but it is {how} '{declared[position]}' "
        f"(channel _{position:04d}; expected: {order}){suffix}"
    )


def check_modality_order(paths: Sequence[str | Path], declared: Sequence[str], hint: str = "") -> None:
    """Refuse a case whose file count or file names contradict the declared modality order.

    Args:
        paths: the case's files, one per modality, in the order given.
        declared: the model's (or pipeline's) modality names, in order.
        hint: appended to the error (e.g. how to name the files explicitly on the command line).

    Raises:
        MedsegInputError: wrong number of files, or a file that names a modality standing at another
            modality's position (the message names the file, both modalities and the expected order).
    """
    order = ", ".join(declared)
    suffix = f"; {hint}" if hint else ""
    if len(paths) != len(declared):
        raise MedsegInputError(
            paths[0] if paths else None,
            f"got {len(paths)} image(s) for one case; the model expects {len(declared)} modalities in this order: {order}{suffix}",
        )
    for position, path in enumerate(paths):
        found = named_modality(path, declared)
        if found is not None and found != position:
            raise MedsegInputError(
                path,
                f"file name says modality '{declared[found]}' but it is image {position + 1} of {len(paths)}, "
                f"where the model expects '{declared[position]}' (expected order: {order}){suffix}",
            )
        if _nnunet_named(paths, declared):
            _check_channel(path, position, declared, f"image {position + 1} of {len(paths)}, where the model expects", suffix)


def order_by_names(paths: Sequence[str | Path], names: Sequence[str], declared: Sequence[str]) -> list[Path]:
    """Put files named explicitly (``names[i]`` is the modality of ``paths[i]``) into the declared order.

    Names are matched case-insensitively, aliases included (``water`` for ``wat``).

    Raises:
        MedsegInputError: a count mismatch, an unknown name, or a modality named twice or not at all.
    """
    order = ", ".join(declared)
    if len(names) != len(paths):
        raise MedsegInputError(None, f"--modalities names {len(names)} modalities for {len(paths)} image(s); give one name per -i")
    slots: dict[int, Path] = {}
    for path, name in zip(paths, names):
        matches = [i for i, modality in enumerate(declared) if spellings(name) & spellings(modality)]
        if not matches:
            raise MedsegInputError(None, f"--modalities: '{name}' is not one of the model's modalities ({order})")
        if matches[0] in slots:
            raise MedsegInputError(path, f"--modalities names '{declared[matches[0]]}' twice (also for {slots[matches[0]].name})")
        slots[matches[0]] = Path(path)
    missing = [declared[i] for i in range(len(declared)) if i not in slots]
    if missing:
        raise MedsegInputError(None, f"--modalities: no image given for {', '.join(missing)} (the model expects {order})")
    for i, path in slots.items() if _nnunet_named(paths, declared) else ():
        _check_channel(path, i, declared, "named by --modalities as")
    return [slots[i] for i in range(len(declared))]


#: How to fix an order error on the command line (``medseg predict``).
CLI_HINT = "give one -i per modality in that order, or name each image with --modalities (e.g. --modalities wat,fat,inn,opp)"


def case_files(paths: Sequence[str | Path], names: str | None, declared: Sequence[str]) -> list[Path]:
    """The files of one case in the declared modality order (``medseg predict -i ... [--modalities ...]``).

    Args:
        paths: the ``-i`` files, in the order given.
        names: ``--modalities`` (comma-separated modality of each file) or ``None`` (positional order,
            checked against the file names).
        declared: the model package's modalities.
    """
    if names is not None:
        return order_by_names(paths, [n.strip() for n in names.split(",") if n.strip()], declared)
    if len(paths) > 1:  # one file may be a 4D image holding every modality
        check_modality_order(paths, declared, CLI_HINT)
    return [Path(p) for p in paths]


_TRAILING = re.compile(r"^(?P<case>.+)[_-](?P<token>[A-Za-z0-9]+)$")


def group_by_modality(folder: str | Path, declared: Sequence[str]) -> dict[str, list[Path]] | None:
    """A folder's image files grouped into cases by a trailing modality name (``spine_010_fat.nii.gz``,
    ``BraTS_001_t1ce.nii.gz``, aliases included), each case's files in the declared order.

    Returns:
        ``{case: [path per declared modality]}`` sorted by case, or ``None`` when there are fewer than two
        declared modalities or some image file does not end in ``_<modality>`` / ``-<modality>`` (the
        folder then follows another convention, e.g. nnU-Net's ``case_0000``).

    Raises:
        MedsegInputError: a case missing a modality, or two files for one case and modality.
    """
    if len(declared) < 2:
        return None
    grouped: dict[str, dict[int, Path]] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_image_file(path):
            continue
        match = _TRAILING.match(case_name(path))
        hits = [i for i, m in enumerate(declared) if match and spellings(match["token"]) & spellings(m)]
        if match is None or len(hits) != 1:
            return None
        slots = grouped.setdefault(match["case"], {})
        if hits[0] in slots:
            raise MedsegInputError(path, f"second file for case '{match['case']}' {declared[hits[0]]} (the first is {slots[hits[0]].name})")
        slots[hits[0]] = path
    out = {}
    for case, slots in sorted(grouped.items()):
        missing = [declared[i] for i in range(len(declared)) if i not in slots]
        if missing:
            raise MedsegInputError(folder, f"case '{case}' has no {', '.join(missing)} image (the model expects {', '.join(declared)})")
        out[case] = [slots[i] for i in range(len(declared))]
    return out or None
