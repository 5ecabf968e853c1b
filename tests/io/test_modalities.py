"""Modality order by file name: which file names a modality, order errors, explicit naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import MedsegInputError
from medseg.io.modalities import case_files, channel_number, check_modality_order, group_by_modality, named_modality, order_by_names

DIXON = ["fat", "inn", "opp", "wat"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("01_fat.nii", 0),
        ("01_inn.nii.gz", 1),
        ("A1-OPP.nii", 2),
        ("spine_000_wat.nii.gz", 3),
        ("subject_water.nii.gz", 3),  # alias
        ("sub-01_in-phase.nii.gz", 1),  # joined tokens
        ("case_0002.nii.gz", None),  # nnU-Net channel number: position decides
        ("fatty_liver.nii.gz", None),  # a token must match exactly
        ("fat_and_water.nii.gz", None),  # ambiguous: not used for the check
    ],
)
def test_named_modality(name: str, expected: int | None) -> None:
    assert named_modality(name, DIXON) == expected


def test_brats_names_do_not_collide() -> None:
    declared = ["T1", "T1ce", "T2", "FLAIR"]
    names = ["BraTS_001_t1.nii.gz", "BraTS_001_t1ce.nii.gz", "BraTS_001_t2.nii.gz", "BraTS_001_flair.nii.gz"]
    assert [named_modality(n, declared) for n in names] == [0, 1, 2, 3]
    check_modality_order(names, declared)


def test_order_error_names_the_file_and_both_modalities() -> None:
    with pytest.raises(MedsegInputError, match=r"x_wat\.nii: file name says modality 'wat' but it is image 2 of 4, where the model expects 'inn'"):
        check_modality_order(["x_fat.nii", "x_wat.nii", "x_opp.nii", "x_inn.nii"], DIXON)
    with pytest.raises(MedsegInputError, match="got 3 image"):
        check_modality_order(["x_fat.nii", "x_inn.nii", "x_opp.nii"], DIXON)
    check_modality_order(["a_0000.nii", "a_0001.nii", "a_0002.nii", "a_0003.nii"], DIXON)  # unnamed: accepted


def test_explicit_names_reorder_into_the_declared_order() -> None:
    files = [Path("w.nii"), Path("f.nii"), Path("i.nii"), Path("o.nii")]
    assert order_by_names(files, ["water", "FAT", "inn", "opp"], DIXON) == [files[1], files[2], files[3], files[0]]
    assert case_files(files, "wat, fat,inn,opp", DIXON) == [files[1], files[2], files[3], files[0]]
    with pytest.raises(MedsegInputError, match="'t1' is not one of the model's modalities"):
        order_by_names(files, ["t1", "fat", "inn", "opp"], DIXON)
    with pytest.raises(MedsegInputError, match="names 'fat' twice"):
        order_by_names(files, ["fat", "fat", "inn", "opp"], DIXON)
    with pytest.raises(MedsegInputError, match="3 modalities for 4"):
        order_by_names(files, ["fat", "inn", "opp"], DIXON)


def test_case_files_checks_positional_order_and_allows_one_4d_file() -> None:
    with pytest.raises(MedsegInputError, match="--modalities"):
        case_files(["c_inn.nii", "c_fat.nii", "c_opp.nii", "c_wat.nii"], None, DIXON)
    assert case_files(["all_channels.nii.gz"], None, DIXON) == [Path("all_channels.nii.gz")]


def test_folder_grouped_by_trailing_modality(tmp_path: Path) -> None:
    for case in ("spine_010", "spine_011"):
        for m in ("wat", "fat", "inn", "opp"):
            (tmp_path / f"{case}_{m}.nii.gz").write_bytes(b"")
    grouped = group_by_modality(tmp_path, DIXON)
    assert grouped is not None and list(grouped) == ["spine_010", "spine_011"]
    assert [p.name for p in grouped["spine_011"]] == [f"spine_011_{m}.nii.gz" for m in DIXON]
    assert group_by_modality(tmp_path, ["CT"]) is None  # single modality: nothing to group
    (tmp_path / "spine_012_fat.nii.gz").write_bytes(b"")
    with pytest.raises(MedsegInputError, match="case 'spine_012' has no inn, opp, wat image"):
        group_by_modality(tmp_path, DIXON)
    (tmp_path / "spine_012_fat.nii.gz").unlink()
    (tmp_path / "spine_010_water.nii.gz").write_bytes(b"")  # alias of wat: a second water image
    with pytest.raises(MedsegInputError, match="second file for case 'spine_010' wat"):
        group_by_modality(tmp_path, DIXON)


def test_other_folder_conventions_are_left_alone(tmp_path: Path) -> None:
    for name in ("case_0000.nii.gz", "case_0001.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert group_by_modality(tmp_path, DIXON) is None


def test_nnunet_channel_suffix_fixes_the_channel() -> None:
    scrambled = ["g_0003.nii.gz", "g_0000.nii.gz", "g_0001.nii.gz", "g_0002.nii.gz"]
    with pytest.raises(MedsegInputError, match=r"g_0003\.nii\.gz: file name says nnU-Net channel _0003 \('wat'\) but it is image 1 of 4, "
                                               r"where the model expects 'fat' \(channel _0000; expected: _0000 fat, _0001 inn"):
        case_files(scrambled, None, DIXON)
    in_order = sorted(scrambled)
    assert case_files(in_order, None, DIXON) == [Path(p) for p in in_order]
    assert channel_number("BraTS_001_0002.nii.gz") == 2 and channel_number("case_12.nii.gz") is None
    with pytest.raises(MedsegInputError, match=r"g_0004\.nii\.gz: file name ends in channel _0004 but the model has 4 channels"):
        case_files(["g_0000.nii.gz", "g_0001.nii.gz", "g_0002.nii.gz", "g_0004.nii.gz"], None, DIXON)
    # one modality, or files not all named by channel: a trailing number is a case number, not a channel
    check_modality_order(["liver_0003.nii.gz"], ["CT"])
    check_modality_order(["subject_0012.nii.gz", "subject_0012_inn.nii.gz", "subject_0012_opp.nii.gz", "subject_0012_wat.nii.gz"], DIXON)


def test_channel_suffix_conflicting_with_a_modality_name_or_explicit_names() -> None:
    # the name says fat (first), the suffix says channel 1 (inn): refused, whatever the position
    with pytest.raises(MedsegInputError, match=r"x_fat_0001\.nii: file name says nnU-Net channel _0001 \('inn'\)"):
        check_modality_order(["x_fat_0001.nii", "x_0000.nii", "x_0002.nii", "x_0003.nii"], DIXON)
    files = ["g_0001.nii", "g_0000.nii", "g_0002.nii", "g_0003.nii"]
    with pytest.raises(MedsegInputError, match=r"g_0001\.nii: file name says nnU-Net channel _0001 \('inn'\) but it is named by --modalities as 'fat'"):
        case_files(files, "fat,inn,opp,wat", DIXON)
    assert case_files(files, "inn,fat,opp,wat", DIXON) == [Path(f) for f in sorted(files)]
