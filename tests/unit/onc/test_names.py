"""Server-given file names: safe ones pass unchanged, unsafe ones raise OutputError."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.exceptions import OutputError
from pipeline.onc.names import check_file_name, disposition_file_name, safe_path, temp_path


@pytest.mark.parametrize(
    "name",
    [
        "ICLISTENHF1560_20181005T000403.000Z-spect.mat",
        "AXISQ6044PTZACCC8E334C53_20161201T000000.000Z.mp4",
        "ClayoquotSlope_Bullseye_CTD_20170119T000000Z-clean_PNG_META.xml",
        "a b.txt",
    ],
)
def test_safe_names_pass_unchanged(name: str) -> None:
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../etc/passwd",
        "/etc/passwd",
        "dir/file.txt",
        "..\\windows.txt",
        "C:evil.txt",
        "nul\x00byte.txt",
        "line\nbreak.txt",
        ".hidden",
        " padded.txt",
        "x" * 256,
    ],
)
def test_unsafe_names_raise_output_error_naming_them(name: str) -> None:
    with pytest.raises(OutputError) as info:
        check_file_name(name)
    assert repr(name)[:40] in str(info.value)


def test_safe_path_stays_in_dest(tmp_path: Path) -> None:
    path = safe_path(tmp_path, "f.csv")
    assert path.parent == tmp_path.resolve()
    assert temp_path(path).name == ".f.csv.part"
    with pytest.raises(OutputError):
        safe_path(tmp_path, "../f.csv")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("attachment; filename=NC89_CTD.csv", "NC89_CTD.csv"),
        ('attachment; filename="quoted name.csv"', "quoted name.csv"),
        ("attachment; filename*=UTF-8''caf%C3%A9.csv", "café.csv"),
        ("attachment; filename=plain.csv; filename*=UTF-8''better.csv", "better.csv"),
        ("attachment", None),
        (None, None),
    ],
)
def test_content_disposition_names(header: str | None, expected: str | None) -> None:
    assert disposition_file_name(header) == expected


def test_content_disposition_traversal_is_caught_by_the_check() -> None:
    name = disposition_file_name("attachment; filename=../../x.csv")
    assert name == "../../x.csv"
    with pytest.raises(OutputError):
        check_file_name(name)
