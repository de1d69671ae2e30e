"""The prototype rating sheet: round trip, validation and appending."""
import pytest

from ecglens.errors import ECGError
from ecglens.explain.ratings import RATING_FIELDS, PrototypeRating, append_ratings, read_ratings, write_ratings


def test_round_trip_and_append(tmp_path):
    sheet = tmp_path / "ratings.csv"
    blank = PrototypeRating("morphology/3", "morphology", "CRBBB")
    write_ratings(sheet, [blank])
    assert sheet.read_text().splitlines()[0] == ",".join(RATING_FIELDS)
    assert read_ratings(sheet) == [blank]
    rated = PrototypeRating("morphology/3", "morphology", "CRBBB", 4, 5, 'rsR\' in V1, "clear"', "dr a")
    append_ratings(sheet, [rated])
    assert read_ratings(sheet) == [blank, rated]


@pytest.mark.parametrize("score", [0, 6, 2.5, True])
def test_scores_outside_one_to_five_are_refused(score):
    with pytest.raises(ValueError, match="representativeness"):
        PrototypeRating("rhythm/0", "rhythm", "AFIB", representativeness=score)


def test_bad_sheet_names_file_and_row(tmp_path):
    sheet = tmp_path / "bad.csv"
    sheet.write_text(",".join(RATING_FIELDS) + "\nrhythm/0,rhythm,AFIB,9,1,,\n")
    with pytest.raises(ECGError, match=r"bad.csv: row 2: representativeness"):
        read_ratings(sheet)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ECGError, match="missing columns"):
        read_ratings(tmp_path / "other.csv")
