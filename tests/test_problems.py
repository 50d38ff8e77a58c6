import pandas as pd
import pytest

from emosphere.problems import PROBLEM_COLUMNS, LabelError, no_problems, problems_table, raise_first


def test_the_first_kind_of_error_is_raised_with_its_file_and_lines():
    problems = pd.concat(
        [
            problems_table("warning", "odd class", "a.txt", [2], ["Z"]),
            problems_table("error", "label outside [1, 5]", "a.txt", list(range(3, 15)), ["6"] * 12),
            problems_table("error", "malformed utterance line", "b.txt", [7], ["[x"]),
        ]
    )
    with pytest.raises(LabelError) as error:
        raise_first("corpus", problems, "see above")
    assert str(error.value) == (
        "a.txt: label outside [1, 5]; bad value on line(s) [3, 4, 5, 6, 7, 8, 9, 10, 11, 12] and 2 more; "
        "1 other problem(s): see above"
    )


def test_errors_without_lines_name_what_is_wrong_and_warnings_alone_pass():
    missing = problems_table("error", "no dialog/EmoEvaluation folder", "/c/Session3", [], [""])
    spread = pd.concat([missing, problems_table("error", "no dialog/EmoEvaluation folder", "/c/Session4", [], ["x"])])
    with pytest.raises(LabelError, match=r"^/c: no dialog/EmoEvaluation folder; /c/Session3, x$"):
        raise_first("/c", spread, "")
    raise_first("/c", problems_table("warning", "unknown line (skipped)", "a.txt", [3], ["?"]), "")
    assert list(no_problems().columns) == list(PROBLEM_COLUMNS) and no_problems().empty
