"""Download lists and the no-pooch error (brainattr.data.download); nothing is downloaded: no network in tests."""
import sys

import pytest

from brainattr.data.download import download, download_list
from brainattr.data.harry_potter import HP_CMU_URL
from brainattr.data.moth import MOTH_GIN_URL, MOTH_TEXTGRID_URL
from brainattr.schema import DataError


def test_download_list_and_a_clear_error_without_pooch(tmp_path, monkeypatch, capsys):
    hp = download_list("hp")
    assert [rel for _, rel in hp][:2] == ["hp/subject_1.mat", "hp/subject_2.mat"] and len(hp) == 9
    assert hp[0][0] == [HP_CMU_URL + "subject_1.mat"]
    moth = dict((rel, urls) for urls, rel in download_list("moth", ["sub-01"]))
    assert moth["moth/responses/subject01_reading_fmri_data_val.hdf"] == [
        MOTH_GIN_URL + "/raw/master/responses/subject01_reading_fmri_data_val.hdf"]
    assert moth["moth/textgrids/story_11.TextGrid"] == [MOTH_TEXTGRID_URL + "wheretheressmoke.TextGrid"]
    monkeypatch.setitem(sys.modules, "pooch", None)  # as if pooch were not installed
    with pytest.raises(DataError, match="pip install 'pooch"):
        download("hp", data_home=tmp_path)
    from brainattr.book.cli import main

    assert main(["download", "moth", "--data-home", str(tmp_path)]) == 1
    assert "pooch" in capsys.readouterr().err
