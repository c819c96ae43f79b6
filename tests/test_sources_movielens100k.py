"""Tests for :mod:`coda_jax.data.sources.movielens100k` (MovieLens 100K reader)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from coda_jax.data.ingest import DataError
from coda_jax.data.sources.movielens100k import read_movielens100k
from coda_jax.data.schema import Interactions

REAL_ML100K = Path("/work/shared/data/ml-100k")


def _flags(*genre_cols: int) -> str:
    """19 '|'-joined 0/1 flags with the given 0-based columns set."""
    return "|".join("1" if j in genre_cols else "0" for j in range(19))


def _item_line(movie_id, title: bytes, flags: str) -> bytes:
    return b"%s|%s|01-Jan-1995||http://us.imdb.com/x|%s" % (str(movie_id).encode(), title, flags.encode())


# Items listed out of order; ids 10, 20, 5 -> dense ids 2, 3, 1.
ITEM_LINES = [
    _item_line(10, b"Caf\xe9 Society (1995)", _flags(0, 3, 18)),  # Latin-1 e-acute in the title
    _item_line(20, b"GoldenEye (1995)", _flags(1)),
    _item_line(5, b"No Genre (1995)", _flags()),
]
# Users 7, 3, 42 -> dense 1, 0, 2.
USER_LINES = [b"7|24|M|technician|85711", b"3|53|F|other|94043", b"42|23|M|writer|32067"]
# user, item, rating, timestamp
DATA_LINES = [
    b"7\t10\t5\t881250949",
    b"3\t20\t3\t891717742",
    b"42\t5\t4\t878887116",
    b"7\t20\t1\t880000000",
    b"3\t10\t4\t890000000",
]


def _write(tmp_path: Path, data=None, item=None, user=None, skip=()) -> Path:
    d = tmp_path / "ml-100k"
    d.mkdir(exist_ok=True)
    files = {
        "u.data": DATA_LINES if data is None else data,
        "u.item": ITEM_LINES if item is None else item,
        "u.user": USER_LINES if user is None else user,
    }
    for name, lines in files.items():
        if name in skip:
            continue
        content = lines if isinstance(lines, bytes) else b"\n".join(lines) + b"\n"
        (d / name).write_bytes(content)
    return d


def _raises(path: Path, line: int | None, *parts: str):
    """pytest.raises(DataError) whose message starts with the file (and line) and contains ``parts``."""
    prefix = re.escape(str(path)) + (f" line {line}:" if line is not None else ":")
    rest = "".join(f".*{re.escape(p)}" for p in parts)
    return pytest.raises(DataError, match=f"^{prefix}{rest}")


# ------------------------------------------------------------------------------------------------ parsing


def test_parses_hand_computed_values(tmp_path):
    d = _write(tmp_path)
    out = read_movielens100k(d)
    assert isinstance(out, Interactions)
    assert out.name == str(d)
    np.testing.assert_array_equal(out.user_ids, [3, 7, 42])
    assert out.user_ids.dtype == np.int64
    assert out.num_users == 3 and out.num_items == 3 and out.num_genres == 19 and len(out) == 5

    np.testing.assert_array_equal(out.user, [1, 0, 2, 1, 0])
    np.testing.assert_array_equal(out.item, [2, 3, 1, 3, 2])
    np.testing.assert_array_equal(out.label, [1.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(out.time, [881250949, 891717742, 878887116, 880000000, 890000000])
    assert out.user.dtype == np.int32 and out.item.dtype == np.int32
    assert out.label.dtype == np.float32 and out.time.dtype == np.int64

    # Gmax = 3 (movie 10 has three genres); flag column j -> genre j + 1, left-packed, 0-padded.
    expected_genres = np.array(
        [
            [0, 0, 0],  # padding item
            [0, 0, 0],  # movie 5: no genres
            [1, 4, 19],  # movie 10
            [2, 0, 0],  # movie 20
        ],
        dtype=np.int32,
    )
    np.testing.assert_array_equal(out.item_genres, expected_genres)
    assert out.item_genres.dtype == np.int32


def test_like_threshold(tmp_path):
    out = read_movielens100k(_write(tmp_path), like_threshold=3.0)
    np.testing.assert_array_equal(out.label, [1.0, 1.0, 1.0, 0.0, 1.0])


def test_gmax_at_least_one_and_path_str(tmp_path):
    items = [_item_line(1, b"A", _flags()), _item_line(2, b"B", _flags())]
    d = _write(tmp_path, data=[b"3\t1\t2\t5", b"7\t2\t5\t6"], item=items)
    out = read_movielens100k(str(d))
    assert out.item_genres.shape == (3, 1)
    assert not out.item_genres.any()
    assert out.name == str(d)


def test_trailing_blank_lines_and_crlf_ok(tmp_path):
    data = b"\r\n".join(DATA_LINES) + b"\r\n\r\n  \n\n"
    d = _write(tmp_path, data=data)
    out = read_movielens100k(d)
    assert len(out) == 5
    np.testing.assert_array_equal(out.time[:2], [881250949, 891717742])


def test_latin1_byte_0x85_in_title_is_not_a_line_break(tmp_path):
    # Latin-1 0x85 decodes to U+0085, which str.splitlines() would treat as a newline.
    items = list(ITEM_LINES)
    items[1] = _item_line(20, b"Golden\x85Eye (1995)", _flags(1))
    out = read_movielens100k(_write(tmp_path, item=items))
    assert out.num_items == 3


# ------------------------------------------------------------------------------------------------ errors


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=re.escape(str(missing)) + ".*does not exist.*u.data, u.item, u.user"):
        read_movielens100k(missing)


@pytest.mark.parametrize("name", ["u.data", "u.item", "u.user"])
def test_missing_file(tmp_path, name):
    d = _write(tmp_path, skip=(name,))
    with pytest.raises(DataError, match=re.escape(str(d / name)) + ".*not found.*u.data, u.item, u.user"):
        read_movielens100k(d)


def test_wrong_field_count_u_data(tmp_path):
    data = list(DATA_LINES)
    data[2] = b"42\t5\t4"
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 3, "expected 4 tab-separated fields (user, item, rating, timestamp), got 3"):
        read_movielens100k(d)


def test_blank_line_in_middle_is_an_error(tmp_path):
    data = DATA_LINES[:2] + [b""] + DATA_LINES[2:]
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 3, "got 1 (blank line)"):
        read_movielens100k(d)


def test_wrong_field_count_u_item(tmp_path):
    items = list(ITEM_LINES)
    items[1] = items[1] + b"|0"
    d = _write(tmp_path, item=items)
    with _raises(d / "u.item", 2, "expected 24 '|'-separated fields", "got 25"):
        read_movielens100k(d)


def test_wrong_field_count_u_user(tmp_path):
    d = _write(tmp_path, user=USER_LINES[:2] + [b"42|23|M|writer"])
    with _raises(d / "u.user", 3, "expected 5 '|'-separated fields", "got 4"):
        read_movielens100k(d)


@pytest.mark.parametrize(
    "col, bad, field",
    [(0, b"u7", "user"), (1, b"1.5", "item"), (2, b"five", "rating"), (3, b"", "timestamp"), (3, b"-5", "timestamp")],
)
def test_non_numeric_u_data_field(tmp_path, col, bad, field):
    data = list(DATA_LINES)
    parts = data[3].split(b"\t")
    parts[col] = bad
    data[3] = b"\t".join(parts)
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 4, f"'{field}'", repr(bad.decode())):
        read_movielens100k(d)


def test_non_numeric_movie_id(tmp_path):
    items = list(ITEM_LINES)
    items[2] = _item_line("x5", b"No Genre (1995)", _flags())
    d = _write(tmp_path, item=items)
    with _raises(d / "u.item", 3, "'movie id'", "'x5'"):
        read_movielens100k(d)


def test_non_numeric_user_id(tmp_path):
    d = _write(tmp_path, user=[USER_LINES[0], b"abc|53|F|other|94043", USER_LINES[2]])
    with _raises(d / "u.user", 2, "'user id'", "'abc'"):
        read_movielens100k(d)


@pytest.mark.parametrize("rating", [b"0", b"6", b"nan"])
def test_rating_out_of_range(tmp_path, rating):
    data = list(DATA_LINES)
    data[1] = b"3\t20\t%s\t891717742" % rating
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 2, "'rating'", "1..5"):
        read_movielens100k(d)


def test_fractional_rating_is_accepted(tmp_path):
    data = list(DATA_LINES)
    data[1] = b"3\t20\t4.5\t891717742"
    out = read_movielens100k(_write(tmp_path, data=data))
    assert out.label[1] == 1.0


def test_unknown_item(tmp_path):
    data = list(DATA_LINES)
    data[4] = b"3\t11\t4\t890000000"
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 5, "item 11", str(d / "u.item")):
        read_movielens100k(d)


def test_unknown_user(tmp_path):
    data = list(DATA_LINES)
    data[0] = b"99\t10\t5\t881250949"
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 1, "user 99", str(d / "u.user")):
        read_movielens100k(d)


@pytest.mark.parametrize("flag", ["2", "x", ""])
def test_bad_genre_flag(tmp_path, flag):
    flags = _flags(1).split("|")
    flags[4] = flag
    items = list(ITEM_LINES)
    items[1] = _item_line(20, b"GoldenEye (1995)", "|".join(flags))
    d = _write(tmp_path, item=items)
    with _raises(d / "u.item", 2, "genre flag 5", "0 or 1", repr(flag)):
        read_movielens100k(d)


def test_duplicate_movie_id(tmp_path):
    items = ITEM_LINES + [_item_line(20, b"Again (1995)", _flags(2))]
    d = _write(tmp_path, item=items)
    with _raises(d / "u.item", 4, "duplicate movie id 20", "first seen on line 2"):
        read_movielens100k(d)


def test_duplicate_user_id(tmp_path):
    d = _write(tmp_path, user=USER_LINES + [b"3|11|M|other|00000"])
    with _raises(d / "u.user", 4, "duplicate user id 3", "first seen on line 2"):
        read_movielens100k(d)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_u_data(tmp_path, content):
    d = _write(tmp_path, data=content)
    with _raises(d / "u.data", None, "no ratings"):
        read_movielens100k(d)


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.skipif(not REAL_ML100K.is_dir(), reason="MovieLens 100K not available")
def test_real_movielens100k():
    out = read_movielens100k(REAL_ML100K)
    assert len(out) == 100_000
    assert out.num_users == 943
    assert out.num_items == 1682
    assert out.num_genres == 19
    np.testing.assert_array_equal(out.user_ids, np.arange(1, 944))
    assert out.item.min() == 1 and out.item.max() == 1682
    assert out.user.min() == 0 and out.user.max() == 942
    assert out.item_genres.shape[0] == 1683 and not out.item_genres[0].any()
    assert (out.item_genres[1:] > 0).any(axis=1).all()  # every movie has at least one genre flag
    # First line of u.data: 196  242  3  881250949
    assert (out.user_ids[out.user[0]], out.item[0], out.label[0], out.time[0]) == (196, 242, 0.0, 881250949)


# ------------------------------------------------------------------------------------------------ issue 11


@pytest.mark.parametrize("name", ["u.data", "u.item", "u.user"])
def test_utf8_bom_at_file_start_is_ignored(tmp_path, name):
    (tmp_path / "plain").mkdir()
    (tmp_path / "bom").mkdir()
    plain = read_movielens100k(_write(tmp_path / "plain"))
    d = _write(tmp_path / "bom")
    (d / name).write_bytes(b"\xef\xbb\xbf" + (d / name).read_bytes())
    out = read_movielens100k(d)
    for field in ("user", "item", "label", "time", "item_genres", "user_ids"):
        np.testing.assert_array_equal(getattr(out, field), getattr(plain, field), err_msg=field)
    assert out.dropped_rows == {}


def test_utf8_bom_inside_a_line_is_still_an_error(tmp_path):
    data = list(DATA_LINES)
    data[2] = b"\xef\xbb\xbf" + data[2]
    d = _write(tmp_path, data=data)
    with _raises(d / "u.data", 3, "'user'"):
        read_movielens100k(d)


def test_duplicate_u_data_row_raises_naming_both_lines(tmp_path):
    d = _write(tmp_path, data=DATA_LINES + [b"3\t20\t5\t891717742"])  # line 6 repeats line 2 (user, item, time)
    with _raises(d / "u.data", 6, "duplicate of line 2", "same user, item and timestamp", "skip_bad_rows"):
        read_movielens100k(d)


def test_duplicate_u_data_row_is_dropped_and_counted_with_skip_bad_rows(tmp_path):
    d = _write(tmp_path, data=DATA_LINES + [b"3\t20\t5\t891717742", b"7\t10\t5\t881250949"])
    out = read_movielens100k(d, skip_bad_rows=True)
    assert out.dropped_rows == {"duplicate": 2}
    assert len(out) == 5
    np.testing.assert_array_equal(out.time, [881250949, 891717742, 878887116, 880000000, 890000000])
    np.testing.assert_array_equal(out.label, [1.0, 0.0, 1.0, 0.0, 1.0])  # the first occurrence is kept
    # same user and item at another time is not a duplicate
    (tmp_path / "b").mkdir()
    out = read_movielens100k(_write(tmp_path / "b", data=DATA_LINES + [b"3\t20\t5\t891717743"]))
    assert len(out) == 6 and out.dropped_rows == {}


def test_skip_bad_rows_counts_other_u_data_problems(tmp_path):
    data = list(DATA_LINES)
    data[1] = b"3\t20\t9\t891717742"  # rating out of range
    data[3] = b"99\t20\t1\t880000000"  # user not in u.user
    out = read_movielens100k(_write(tmp_path, data=data), skip_bad_rows=True, block_bytes=16)
    assert out.dropped_rows == {"bad_rating": 1, "unknown_user": 1}
    np.testing.assert_array_equal(out.time, [881250949, 878887116, 890000000])


def test_data_skip_bad_rows_reaches_the_100k_reader(tmp_path):
    import dataclasses

    from coda_jax.config import Config
    from coda_jax.data.dataset import load_interactions

    d = _write(tmp_path, data=DATA_LINES + [DATA_LINES[0]])
    cfg = Config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="movielens100k", data_dir=str(d)))
    with _raises(d / "u.data", 6, "duplicate of line 1"):
        load_interactions(cfg)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, skip_bad_rows=True))
    inter = load_interactions(cfg)
    assert inter.dropped_rows == {"duplicate": 1} and len(inter) == 5
