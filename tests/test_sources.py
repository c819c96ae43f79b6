"""Tests for :mod:`coda_jax.data.sources`: MovieLens 1M / CSV, Amazon, Taobao and generic CSV readers.

Every reader is checked on small hand-written files against hand-computed values, on malformed lines
(DataError naming file and line, or counted in the DropReport with ``skip_bad_rows``), and with tiny read
blocks so lines and blank-line rules cross block boundaries.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import time
from pathlib import Path

import numpy as np
import pytest

from coda_jax.config import Config, ConfigError, load
from coda_jax.data.dataset import load_interactions, make_dataset
from coda_jax.data.ingest import DataError, DropReport
from coda_jax.data.sources.amazon import read_amazon
from coda_jax.data.sources.csv import CsvFormat, read_interactions_csv
from coda_jax.data.sources.movielens1m import read_movielens1m
from coda_jax.data.sources.movielens_csv import read_movielens_csv
from coda_jax.data.sources.taobao import read_taobao
from coda_jax.data.schema import Interactions

REPO = Path(__file__).resolve().parents[1]
BLOCKS = [8 << 20, 16, 1]  # default, a few lines per block, one byte per read


def _lines(lines: list[bytes], eol: bytes = b"\n") -> bytes:
    return eol.join(lines) + eol


def _raises(path: Path, line: int | None, *parts: str):
    """pytest.raises(DataError) whose message starts with the file (and line) and contains ``parts``."""
    prefix = re.escape(str(path)) + (f" line {line}:" if line is not None else ":")
    rest = "".join(f".*{re.escape(p)}" for p in parts)
    return pytest.raises(DataError, match=f"^{prefix}{rest}")


def _check_types(out: Interactions) -> None:
    assert out.user.dtype == np.int32 and out.item.dtype == np.int32
    assert out.label.dtype == np.float32 and out.time.dtype == np.int64 and out.item_genres.dtype == np.int32
    assert out.item.min() >= 1 and out.item.max() <= out.num_items
    assert out.user.min() >= 0 and out.user.max() < out.num_users
    assert not out.item_genres[0].any()
    assert out.item_genres.max() <= out.num_genres


# ============================================================================================== MovieLens 1M

ML1M_MOVIES = [
    b"10::Caf\xe9 Society (1995)::Comedy|Action",  # Latin-1 e-acute
    b"2::GoldenEye (1995)::Drama",
    b"7::Toy Story: The Movie (1995)::Action|Children's",  # a single ':' in the title is fine
]
ML1M_USERS = [b"5::F::1::10::48067", b"1::M::56::16::70072", b"3::M::25::15::55117"]
ML1M_RATINGS = [
    b"5::10::5::978300760",
    b"1::2::3::978302109",
    b"3::7::4::978301968",
    b"5::2::1::978300275",
    b"1::10::4::978824291",
]


def _ml1m(tmp_path: Path, ratings=None, movies=None, users=None, eol: bytes = b"\n") -> Path:
    d = tmp_path / "ml-1m"
    d.mkdir(exist_ok=True)
    for name, lines in (("ratings.dat", ratings or ML1M_RATINGS), ("movies.dat", movies or ML1M_MOVIES),
                        ("users.dat", users or ML1M_USERS)):
        (d / name).write_bytes(lines if isinstance(lines, bytes) else _lines(lines, eol))
    return d


@pytest.mark.parametrize("block", BLOCKS)
def test_ml1m_values(tmp_path, block):
    d = _ml1m(tmp_path)
    out, rep = read_movielens1m(d, block_bytes=block)
    assert rep.counts == {} and rep.total == 0
    assert out.name == str(d)
    np.testing.assert_array_equal(out.user_ids, [1, 3, 5])
    assert out.user_ids.dtype == np.int64
    # movies 2, 7, 10 -> items 1, 2, 3; genres Action 1, Children's 2, Comedy 3, Drama 4 (sorted names)
    np.testing.assert_array_equal(out.user, [2, 0, 1, 2, 0])
    np.testing.assert_array_equal(out.item, [3, 1, 2, 1, 3])
    np.testing.assert_array_equal(out.label, [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(out.time, [978300760, 978302109, 978301968, 978300275, 978824291])
    assert out.num_genres == 4 and out.num_items == 3 and out.num_users == 3
    np.testing.assert_array_equal(out.item_genres, [[0, 0], [4, 0], [1, 2], [1, 3]])
    _check_types(out)


def test_ml1m_crlf_threshold_and_trailing_blanks(tmp_path):
    d = _ml1m(tmp_path, ratings=_lines(ML1M_RATINGS, b"\r\n") + b"\r\n \r\n\n", eol=b"\r\n")
    out, _ = read_movielens1m(d, like_threshold=3.0)
    np.testing.assert_array_equal(out.label, [1, 1, 1, 0, 1])
    assert out.num_genres == 4


@pytest.mark.parametrize("row, bad, line, parts", [
    (2, b"3::7::4", 3, ("expected 4 '::'-separated fields (user, item, rating, timestamp), got 3",)),
    (1, b"u1::2::3::978302109", 2, ("field 'user' must be a non-negative integer, got 'u1'",)),
    (0, b"5::1x::5::978300760", 1, ("field 'item'", "'1x'")),
    (3, b"5::2::6::978300275", 4, ("field 'rating' must be a number in 1..5, got '6'",)),
    (3, b"5::2::x::978300275", 4, ("field 'rating'", "'x'")),
    (4, b"1::10::4::97882x4291", 5, ("field 'timestamp' must be an integer", "'97882x4291'")),
])
@pytest.mark.parametrize("block", [8 << 20, 16])
def test_ml1m_bad_line(tmp_path, row, bad, line, parts, block):
    ratings = list(ML1M_RATINGS)
    ratings[row] = bad
    d = _ml1m(tmp_path, ratings=ratings)
    with _raises(d / "ratings.dat", line, *parts):
        read_movielens1m(d, block_bytes=block)


def test_ml1m_unknown_ids_and_duplicates(tmp_path):
    r = list(ML1M_RATINGS)
    r[4] = b"1::11::4::978824291"
    d = _ml1m(tmp_path, ratings=r)
    with _raises(d / "ratings.dat", 5, "item 11 is not listed in", str(d / "movies.dat")):
        read_movielens1m(d)
    r = list(ML1M_RATINGS)
    r[0] = b"99::10::5::978300760"
    d = _ml1m(tmp_path, ratings=r)
    with _raises(d / "ratings.dat", 1, "user 99 is not listed in", str(d / "users.dat")):
        read_movielens1m(d)
    d = _ml1m(tmp_path, ratings=ML1M_RATINGS + [b"1::2::5::978302109"])
    with _raises(d / "ratings.dat", 6, "duplicate of line 2", "skip_bad_rows"):
        read_movielens1m(d)


@pytest.mark.parametrize("block", [8 << 20, 16])
def test_ml1m_blank_line_in_middle(tmp_path, block):
    d = _ml1m(tmp_path, ratings=ML1M_RATINGS[:2] + [b"  "] + ML1M_RATINGS[2:])
    with _raises(d / "ratings.dat", 3, "got 1 (blank line)"):
        read_movielens1m(d, block_bytes=block)


@pytest.mark.parametrize("block", BLOCKS)
def test_ml1m_skip_bad_rows_counts_every_reason(tmp_path, block):
    ratings = [
        b"5::10::5::978300760",   # 1 good
        b"u1::2::3::978302109",   # 2 bad_value
        b"3::7::4",               # 3 bad_fields
        b"",                      # 4 blank_line
        b"5::2::6::978300275",    # 5 bad_rating
        b"1::11::4::978824291",   # 6 unknown_item
        b"99::10::4::1",          # 7 unknown_user
        b"5::10::5::978300760",   # 8 duplicate of line 1
        b"3::7::4::978301968",    # 9 good
        b"",                      # trailing blank lines are not rows
        b"",
    ]
    d = _ml1m(tmp_path, ratings=ratings)
    out, rep = read_movielens1m(d, skip_bad_rows=True, block_bytes=block)
    assert isinstance(rep, DropReport)
    assert rep.counts == {"bad_value": 1, "bad_fields": 1, "blank_line": 1, "bad_rating": 1, "unknown_item": 1,
                          "unknown_user": 1, "duplicate": 1}
    assert rep.total == 7 and rep["duplicate"] == 1 and rep["bad_label"] == 0
    path = d / "ratings.dat"
    assert rep.first == {"bad_value": f"{path} line 2", "bad_fields": f"{path} line 3",
                         "blank_line": f"{path} line 4", "bad_rating": f"{path} line 5",
                         "unknown_item": f"{path} line 6", "unknown_user": f"{path} line 7",
                         "duplicate": f"{path} line 8"}
    np.testing.assert_array_equal(out.user, [2, 1])
    np.testing.assert_array_equal(out.item, [3, 2])
    np.testing.assert_array_equal(out.time, [978300760, 978301968])
    np.testing.assert_array_equal(out.label, [1, 1])


def test_ml1m_metadata_errors(tmp_path):
    d = _ml1m(tmp_path, movies=ML1M_MOVIES[:1] + [b"2::GoldenEye (1995)"] + ML1M_MOVIES[2:])
    with _raises(d / "movies.dat", 2, "expected 3 '::'-separated fields", "got 2"):
        read_movielens1m(d)
    d = _ml1m(tmp_path, movies=ML1M_MOVIES + [b"2::Again::Drama"])
    with _raises(d / "movies.dat", 4, "duplicate movie id 2", "first seen on line 2"):
        read_movielens1m(d)
    d = _ml1m(tmp_path, users=[ML1M_USERS[0], b"x1::M::56::16::70072", ML1M_USERS[2]])
    with _raises(d / "users.dat", 2, "'user id'", "'x1'"):
        read_movielens1m(d)
    (d / "users.dat").unlink()
    with pytest.raises(DataError, match=re.escape(str(d / "users.dat")) + ".*not found"):
        read_movielens1m(d)
    with pytest.raises(DataError, match="does not exist"):
        read_movielens1m(tmp_path / "nope")


def test_ml1m_all_rows_dropped_is_an_error(tmp_path):
    d = _ml1m(tmp_path, ratings=[b"5::2::6::978300275"])
    with _raises(d / "ratings.dat", None, "no ratings after dropping bad rows", "bad_rating: 1"):
        read_movielens1m(d, skip_bad_rows=True)


# ============================================================================================== MovieLens CSV

MLCSV_MOVIES = [
    b"movieId,title,genres",
    b"1,Toy Story (1995),Adventure|Animation|Children",
    b'11,"American President, The (1995)",Comedy|Drama|Romance',
    b'5,"Father of the Bride Part II (1995)",Comedy',
    b'7,"Title with ""quotes"", and a comma (2001)",(no genres listed)',
]
MLCSV_RATINGS = [
    b"userId,movieId,rating,timestamp",
    b"3,1,4.0,964982703",
    b"1,11,3.5,964981247",
    b"3,5,0.5,964982224",
    b"20,7,5.0,964983815",
    b"1,99,4.0,964982931",  # movie 99 is not in movies.csv: dropped and counted
    b"1,1,4.5,964982400",
]


def _mlcsv(tmp_path: Path, ratings=None, movies=None, eol: bytes = b"\n") -> Path:
    d = tmp_path / "ml-latest"
    d.mkdir(exist_ok=True)
    for name, lines in (("ratings.csv", ratings or MLCSV_RATINGS), ("movies.csv", movies or MLCSV_MOVIES)):
        (d / name).write_bytes(lines if isinstance(lines, bytes) else _lines(lines, eol))
    return d


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_mlcsv_values(tmp_path, block, eol):
    d = _mlcsv(tmp_path, eol=eol)
    out, rep = read_movielens_csv(d, block_bytes=block)
    assert rep.counts == {"unknown_item": 1}
    assert rep.first == {"unknown_item": f"{d / 'ratings.csv'} line 6"}
    np.testing.assert_array_equal(out.user_ids, [1, 3, 20])
    # movies 1, 5, 7, 11 -> items 1..4
    np.testing.assert_array_equal(out.user, [1, 0, 1, 2, 0])
    np.testing.assert_array_equal(out.item, [1, 4, 2, 3, 1])
    np.testing.assert_array_equal(out.label, [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(out.time, [964982703, 964981247, 964982224, 964983815, 964982400])
    # Adventure 1, Animation 2, Children 3, Comedy 4, Drama 5, Romance 6
    assert out.num_genres == 6 and out.num_items == 4
    np.testing.assert_array_equal(out.item_genres, [[0, 0, 0], [1, 2, 3], [4, 0, 0], [0, 0, 0], [4, 5, 6]])
    _check_types(out)


def test_mlcsv_threshold(tmp_path):
    out, _ = read_movielens_csv(_mlcsv(tmp_path), like_threshold=3.5)
    np.testing.assert_array_equal(out.label, [1, 1, 0, 1, 1])


@pytest.mark.parametrize("row, bad, parts", [
    (2, b"1,11,3.5", ("expected 4 comma-separated fields (userId, movieId, rating, timestamp), got 3",)),
    (2, b"1,11,3.5,964981247,x", ("got 5",)),
    (1, b"3,abc,4.0,964982703", ("field 'movieId' must be a non-negative integer, got 'abc'",)),
    (1, b"-3,1,4.0,964982703", ("field 'userId'", "'-3'")),
    (3, b"3,5,0,964982224", ("field 'rating' must be a number in 0.5..5, got '0'",)),
    (3, b"3,5,5.5,964982224", ("field 'rating'", "'5.5'")),
    (3, b"3,5,four,964982224", ("field 'rating'", "'four'")),
    (4, b"20,7,5.0,", ("field 'timestamp' must be an integer, got ''",)),
])
def test_mlcsv_bad_line(tmp_path, row, bad, parts):
    ratings = list(MLCSV_RATINGS)
    ratings[row] = bad
    d = _mlcsv(tmp_path, ratings=ratings)
    with _raises(d / "ratings.csv", row + 1, *parts):
        read_movielens_csv(d)
    out, rep = read_movielens_csv(d, skip_bad_rows=True)
    assert rep.total == 2 and rep["unknown_item"] == 1  # the bad line and movie 99
    assert len(out) == 4


def test_mlcsv_tolerates_whitespace_and_sci_notation(tmp_path):
    ratings = list(MLCSV_RATINGS)
    ratings[1] = b" 3 , 1 ,4e0, 964982703 "
    out, _ = read_movielens_csv(_mlcsv(tmp_path, ratings=ratings))
    assert (out.user[0], out.item[0], out.label[0], out.time[0]) == (1, 1, 1.0, 964982703)


def test_mlcsv_header_and_movies_errors(tmp_path):
    d = _mlcsv(tmp_path, ratings=[b"user,movie,rating,timestamp"] + MLCSV_RATINGS[1:])
    with _raises(d / "ratings.csv", 1, "expected the header userId,movieId,rating,timestamp"):
        read_movielens_csv(d)
    d = _mlcsv(tmp_path, ratings=[b""])
    with _raises(d / "ratings.csv", 1, "expected a header line"):
        read_movielens_csv(d)
    d = _mlcsv(tmp_path, ratings=MLCSV_RATINGS[:1])
    with _raises(d / "ratings.csv", None, "no ratings"):
        read_movielens_csv(d)
    movies = list(MLCSV_MOVIES)
    movies[2] = b"11,American President, The (1995),Comedy"  # unquoted comma -> 4 fields
    d = _mlcsv(tmp_path, movies=movies)
    with _raises(d / "movies.csv", 3, "expected 3 comma-separated fields", "got 4"):
        read_movielens_csv(d)
    movies = list(MLCSV_MOVIES)
    movies[3] = b"x5,Father,Comedy"
    d = _mlcsv(tmp_path, movies=movies)
    with _raises(d / "movies.csv", 4, "'movieId'", "'x5'"):
        read_movielens_csv(d)
    d = _mlcsv(tmp_path, movies=MLCSV_MOVIES + [b"5,Again,Drama"])
    with _raises(d / "movies.csv", 6, "duplicate movieId 5", "first seen on line 4"):
        read_movielens_csv(d)
    d = _mlcsv(tmp_path, movies=[b"id,title,genres"] + MLCSV_MOVIES[1:])
    with _raises(d / "movies.csv", 1, "expected the header movieId,title,genres"):
        read_movielens_csv(d)


def test_mlcsv_duplicates(tmp_path):
    d = _mlcsv(tmp_path, ratings=MLCSV_RATINGS + [b"3,5,4.0,964982224"])
    with _raises(d / "ratings.csv", 8, "duplicate of line 4", "same userId, movieId and timestamp"):
        read_movielens_csv(d)
    out, rep = read_movielens_csv(d, skip_bad_rows=True)
    assert rep.counts == {"unknown_item": 1, "duplicate": 1}
    assert len(out) == 5 and out.label[2] == 0.0  # the first of the two rows is kept


def test_mlcsv_streams_200k_rows_fast(tmp_path):
    rng = np.random.default_rng(0)
    n, n_movies = 200_000, 1000
    user = rng.integers(1, 5001, n)
    item = rng.integers(1, n_movies + 1, n)
    item[rng.random(n) < 0.01] = 5000  # not in movies.csv
    half_stars = rng.integers(1, 11, n)
    stamp = 1_000_000_000 + np.arange(n) * 7  # unique -> no duplicates
    rating = np.char.mod("%.1f", half_stars / 2)
    body = "\n".join(",".join(r) for r in zip(user.astype(str), item.astype(str), rating, stamp.astype(str)))
    d = tmp_path / "ml-25m"
    d.mkdir()
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + body + "\n")
    movies = "".join(f'{k},"Movie {k}, The",G{k % 7}|G{k % 3}\n' for k in range(1, n_movies + 1))
    (d / "movies.csv").write_text("movieId,title,genres\n" + movies)
    t0 = time.perf_counter()
    out, rep = read_movielens_csv(d, block_bytes=512 << 10)  # ~9 blocks
    elapsed = time.perf_counter() - t0
    known = item <= n_movies
    assert rep.counts == {"unknown_item": int((~known).sum())}
    uniq = np.unique(user[known])
    np.testing.assert_array_equal(out.user_ids, uniq)
    np.testing.assert_array_equal(out.user_ids[out.user], user[known])
    np.testing.assert_array_equal(out.item, item[known])
    np.testing.assert_array_equal(out.label, (half_stars[known] >= 8).astype(np.float32))
    np.testing.assert_array_equal(out.time, stamp[known])
    assert out.num_genres == 7  # G0..G6 (the G{k % 3} names are among them)
    assert elapsed < 5.0, f"200k rows took {elapsed:.2f}s"


# ============================================================================================== Amazon

AMZ_REVIEWS = [
    b'{"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald", "helpful": [2, 3], '
    b'"reviewText": "I bought this, \\"great\\"", "overall": 5.0, "summary": "Heavenly", '
    b'"unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"}',
    b'{"reviewerID": "A14VAT5EAX3D9S", "asin": "0000013714", "overall": 3.0, "unixReviewTime": 1362000000}',
    b'{"reviewerID": "A2SUAM1J3GNN3B", "asin": "B000ABC", "overall": 4.0, "unixReviewTime": 1262800000}',
    b'{"reviewerID": "A1", "asin": "B000ABC", "overall": 1, "unixReviewTime": 1162800000}',
    b'{"reviewerID": "A1", "asin": "B00NOMETA", "overall": 4, "unixReviewTime": 1162800001}',
]
AMZ_CSV = [b"A2SUAM1J3GNN3B,0000013714,5.0,1252800000", b"A14VAT5EAX3D9S,0000013714,3.0,1362000000",
           b"A2SUAM1J3GNN3B,B000ABC,4.0,1262800000", b"A1,B000ABC,1.0,1162800000", b"A1,B00NOMETA,4.0,1162800001"]
AMZ_META = [
    b'{"asin": "0000013714", "categories": [["Books", "Christian Books & Bibles", "Hymnals"], ["Books", "Music"]]}',
    b"{'asin': 'B000ABC', 'category': ['Electronics', 'Cables'], 'price': 3.5, 'title': \"It's\"}",  # 2014 style
    b'{"asin": "ZZZ", "categories": [["Other"]]}',  # nobody reviewed it
]


def _write(tmp_path: Path, name: str, lines: list[bytes], eol: bytes = b"\n") -> Path:
    p = tmp_path / name
    data = _lines(lines, eol)
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return p


def _check_amazon(out: Interactions, genres: bool) -> None:
    # users A1 < A14VAT5EAX3D9S < A2SUAM1J3GNN3B; items 0000013714 < B000ABC < B00NOMETA
    np.testing.assert_array_equal(out.user_ids, ["A1", "A14VAT5EAX3D9S", "A2SUAM1J3GNN3B"])
    assert out.user_ids.dtype.kind == "U"
    np.testing.assert_array_equal(out.user, [2, 1, 2, 0, 0])
    np.testing.assert_array_equal(out.item, [1, 1, 2, 2, 3])
    np.testing.assert_array_equal(out.label, [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(out.time, [1252800000, 1362000000, 1262800000, 1162800000, 1162800001])
    if genres:  # leaf categories: Cables 1, Hymnals 2, Music 3
        assert out.num_genres == 3
        np.testing.assert_array_equal(out.item_genres, [[0, 0], [2, 3], [1, 0], [0, 0]])
    else:
        assert out.num_genres == 0
        np.testing.assert_array_equal(out.item_genres, np.zeros((4, 1)))
    _check_types(out)


@pytest.mark.parametrize("name", ["reviews_Books_5.json", "Books_5.jsonl", "reviews_Books_5.json.gz"])
def test_amazon_json(tmp_path, name):
    p = _write(tmp_path, name, AMZ_REVIEWS)
    out, rep = read_amazon(p)
    assert rep.counts == {} and out.name == str(p)
    _check_amazon(out, genres=False)
    out, _ = read_amazon(p, meta_path=_write(tmp_path, "meta_Books.json.gz", AMZ_META))
    _check_amazon(out, genres=True)


@pytest.mark.parametrize("block", BLOCKS)
def test_amazon_csv(tmp_path, block):
    p = _write(tmp_path, "ratings_Books.csv", AMZ_CSV, b"\r\n")
    out, rep = read_amazon(p, meta_path=_write(tmp_path, "meta.json", AMZ_META), block_bytes=block)
    assert rep.counts == {}
    _check_amazon(out, genres=True)


@pytest.mark.parametrize("row, bad, reason, parts", [
    (1, b'{"reviewerID": "A14VAT5EAX3D9S", "asin": ', "bad_fields", ("not valid JSON",)),
    (1, b'["A14VAT5EAX3D9S"]', "bad_fields", ("expected a JSON object, got list",)),
    (1, b'{"reviewerID": "A14VAT5EAX3D9S", "asin": "0000013714", "unixReviewTime": 1}', "bad_fields",
     ("missing key 'overall'",)),
    (1, b'{"reviewerID": "A14", "asin": "0000013714", "overall": 6.0, "unixReviewTime": 1}', "bad_rating",
     ("field 'overall' must be a number in 1..5, got 6.0",)),
    (1, b'{"reviewerID": "", "asin": "0000013714", "overall": 3.0, "unixReviewTime": 1}', "bad_value",
     ("field 'reviewerID' must be a non-empty id",)),
    (1, b'{"reviewerID": "A14", "asin": "0000013714", "overall": 3.0, "unixReviewTime": "soon"}', "bad_value",
     ("field 'unixReviewTime' must be an integer, got 'soon'",)),
    (1, b"", "blank_line", ("blank line",)),
    (4, AMZ_REVIEWS[3], "duplicate", ("duplicate of line 4", "same user, item and timestamp")),
])
def test_amazon_json_bad_line(tmp_path, row, bad, reason, parts):
    reviews = list(AMZ_REVIEWS)
    reviews[row] = bad
    p = _write(tmp_path, "reviews.json", reviews)
    with _raises(p, row + 1, *parts):
        read_amazon(p)
    out, rep = read_amazon(p, skip_bad_rows=True)
    assert rep.counts == {reason: 1} and rep.first == {reason: f"{p} line {row + 1}"}
    assert len(out) == 4


@pytest.mark.parametrize("row, bad, parts", [
    (2, b"A2SUAM1J3GNN3B,B000ABC,4.0", ("expected 4 comma-separated fields", "got 3")),
    (2, b"A2SUAM1J3GNN3B,B000ABC,0.0,1262800000", ("field 'rating' must be a number in 1..5, got '0.0'",)),
    (2, b",B000ABC,4.0,1262800000", ("field 'user' must be a non-empty id",)),
    (2, b'A2SUAM1J3GNN3B,"B000ABC",4.0,12628x', ("field 'timestamp'", "'12628x'")),  # quoted -> csv path
])
def test_amazon_csv_bad_line(tmp_path, row, bad, parts):
    rows = list(AMZ_CSV)
    rows[row] = bad
    p = _write(tmp_path, "ratings.csv", rows)
    with _raises(p, row + 1, *parts):
        read_amazon(p)
    out, rep = read_amazon(p, skip_bad_rows=True)
    assert rep.total == 1 and len(out) == 4


def test_amazon_quoted_csv_fields(tmp_path):
    rows = list(AMZ_CSV)
    rows[1] = b'"A14VAT5EAX3D9S","0000013714",3.0,1362000000'
    out, _ = read_amazon(_write(tmp_path, "ratings.csv", rows))
    _check_amazon(out, genres=False)


def test_amazon_errors(tmp_path):
    p = _write(tmp_path, "reviews.txt", AMZ_REVIEWS)
    with _raises(p, None, "cannot tell the Amazon format"):
        read_amazon(p)
    with _raises(tmp_path / "missing.json", None, "file not found"):
        read_amazon(tmp_path / "missing.json")
    p = _write(tmp_path, "reviews.json", AMZ_REVIEWS)
    meta = _write(tmp_path, "meta.json", AMZ_META[:1] + [b"{'asin': 'B000ABC', 'category': [oops"])
    with _raises(meta, 2, "not a JSON (or Python literal) object"):
        read_amazon(p, meta_path=meta)
    out, rep = read_amazon(p, meta_path=meta, skip_bad_rows=True)
    assert rep.counts == {"bad_meta": 1}
    np.testing.assert_array_equal(out.item_genres, [[0, 0], [1, 2], [0, 0], [0, 0]])  # Hymnals 1, Music 2


# ============================================================================================== Taobao

TAOBAO = [
    b"100,2268318,2520377,pv,1511544070",    # 1
    b"100,2333346,2520771,buy,1511561733",   # 2
    b"100,2576651,149192,cart,1511572885",   # 3
    b"7,3830808,4181361,pv,1511593493",      # 4
    b"100,2268318,2520377,fav,1511544070",   # 5 same user, item, time as line 1 but another behavior
    b"7,2268318,2520377,buy,1511500000",     # 6
    b"100,2333346,2520771,pv,1511400000",    # 7
]


@pytest.mark.parametrize("block", BLOCKS)
def test_taobao_values_sorted_by_user_then_time(tmp_path, block):
    p = _write(tmp_path, "UserBehavior.csv", TAOBAO)
    out, rep = read_taobao(p, block_bytes=block)
    assert rep.counts == {} and out.name == str(p)
    np.testing.assert_array_equal(out.user_ids, [7, 100])
    # file lines in output order: 6, 4 | 7, 1, 5 (tie with 1: file order), 2, 3
    np.testing.assert_array_equal(out.user, [0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(out.item, [1, 4, 2, 1, 1, 2, 3])
    np.testing.assert_array_equal(out.label, [1, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(out.time, [1511500000, 1511593493, 1511400000, 1511544070, 1511544070,
                                             1511561733, 1511572885])
    # categories 149192 -> 1, 2520377 -> 2, 2520771 -> 3, 4181361 -> 4
    assert out.num_genres == 4
    np.testing.assert_array_equal(out.item_genres, [[0], [2], [3], [1], [4]])
    _check_types(out)


def test_taobao_label_rule_and_multi_category_items(tmp_path):
    p = _write(tmp_path, "UserBehavior.csv", TAOBAO + [b"7,2268318,4181361,pv,1511600000"])
    out, _ = read_taobao(p, {"pv": 0, "buy": 1, "cart": 0, "fav": 0})
    # output lines: 6, 4, 8 | 7, 1, 5, 2, 3; only buy is positive
    np.testing.assert_array_equal(out.label, [1, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(out.item_genres[1], [2, 4])  # item 2268318 seen with two categories
    assert out.item_genres.shape == (5, 2)


@pytest.mark.parametrize("row, bad, reason, parts", [
    (3, b"7,3830808,4181361,click,1511593493", "unknown_behavior",
     ("field 'behavior' must be one of pv, buy, cart, fav, got 'click'",)),
    (3, b"7,3830808,4181361,pv", "bad_fields", ("expected 5 comma-separated fields", "got 4")),
    (3, b"7,38x30808,4181361,pv,1511593493", "bad_value", ("field 'item_id'", "'38x30808'")),
    (3, b"user_id,item_id,category_id,behavior,timestamp", "bad_value", ("field 'user_id'", "'user_id'")),
    (6, TAOBAO[1], "duplicate", ("duplicate of line 2", "same user, item, category, behavior and timestamp")),
])
@pytest.mark.parametrize("block", [8 << 20, 16])
def test_taobao_bad_line(tmp_path, row, bad, reason, parts, block):
    rows = list(TAOBAO)
    rows[row] = bad
    p = _write(tmp_path, "UserBehavior.csv", rows)
    with _raises(p, row + 1, *parts):
        read_taobao(p, block_bytes=block)
    out, rep = read_taobao(p, skip_bad_rows=True, block_bytes=block)
    assert rep.counts == {reason: 1} and rep.first == {reason: f"{p} line {row + 1}"}
    assert len(out) == 6


def test_taobao_behavior_missing_from_rule_is_unknown(tmp_path):
    p = _write(tmp_path, "UserBehavior.csv", TAOBAO)
    with _raises(p, 3, "must be one of pv, buy, fav", "'cart'"):
        read_taobao(p, {"pv": 0, "buy": 1, "fav": 1})
    with pytest.raises(ValueError, match="label_rule"):
        read_taobao(p, {"pv": 2})


# ============================================================================================== generic CSV

GENERIC = [
    b"uid,iid,stars,ts,tags",
    b"u2,i9,4.5,100,Drama|Comedy",
    b"u1,i3,2,200,",
    b"u2,i3,3,300,Action",
    b'"u1","i9",5,400,"Drama"',
]


@pytest.mark.parametrize("block", BLOCKS)
def test_generic_csv_header_string_ids_genres(tmp_path, block):
    p = _write(tmp_path, "log.csv", GENERIC, b"\r\n")
    cols = {"user": "uid", "item": "iid", "rating": "stars", "time": "ts", "genre": "tags"}
    out, rep = read_interactions_csv(p, cols, block_bytes=block)
    assert rep.counts == {}
    np.testing.assert_array_equal(out.user_ids, ["u1", "u2"])
    np.testing.assert_array_equal(out.user, [1, 0, 1, 0])
    np.testing.assert_array_equal(out.item, [2, 1, 1, 2])  # i3 -> 1, i9 -> 2
    np.testing.assert_array_equal(out.label, [1, 0, 0, 1])
    np.testing.assert_array_equal(out.time, [100, 200, 300, 400])
    assert out.num_genres == 3  # Action 1, Comedy 2, Drama 3; an item's genres are the union over its rows
    np.testing.assert_array_equal(out.item_genres, [[0, 0], [1, 0], [2, 3]])
    _check_types(out)
    out, _ = read_interactions_csv(p, {"user": 0, "item": "iid", "rating": 2, "time": "ts"}, like_threshold=3)
    np.testing.assert_array_equal(out.label, [1, 0, 1, 1])
    assert out.num_genres == 0


def test_generic_csv_no_header_label_tab_numeric_ids(tmp_path):
    p = _write(tmp_path, "log.tsv", [b"10\t5\t1\t1000", b"2\t5\t0\t1001", b"10\t7\t1\t999"])
    out, rep = read_interactions_csv(p, {"user": 0, "item": 1, "label": 2, "time": 3},
                                     fmt=CsvFormat(has_header=False, delimiter="\t"))
    np.testing.assert_array_equal(out.user_ids, [2, 10])
    assert out.user_ids.dtype == np.int64
    np.testing.assert_array_equal(out.user, [1, 0, 1])
    np.testing.assert_array_equal(out.item, [1, 1, 2])
    np.testing.assert_array_equal(out.label, [1, 0, 1])
    np.testing.assert_array_equal(out.time, [1000, 1001, 999])


@pytest.mark.parametrize("row, bad, reason, parts", [
    (1, b"10\t5\t2\t1001", "bad_label", ("field 'column 2' must be 0 or 1, got '2'",)),
    (1, b"10\t5\t1", "bad_fields", ("expected 4 '\\t'-separated fields", "got 3")),
    (1, b"10\t5\t1\tnow", "bad_value", ("field 'column 3' must be an integer, got 'now'",)),
    (2, b"10\t5\t1\t1000", "duplicate", ("duplicate of line 1", "same user, item and time")),
])
def test_generic_csv_bad_line(tmp_path, row, bad, reason, parts):
    rows = [b"10\t5\t1\t1000", b"2\t5\t0\t1001", b"10\t7\t1\t999"]
    rows[row] = bad
    p = _write(tmp_path, "log.tsv", rows)
    cols = {"user": 0, "item": 1, "label": 2, "time": 3}
    with _raises(p, row + 1, *parts):
        read_interactions_csv(p, cols, fmt=CsvFormat(has_header=False, delimiter="\t"))
    out, rep = read_interactions_csv(p, cols, fmt=CsvFormat(has_header=False, delimiter="\t"), skip_bad_rows=True)
    assert rep.counts == {reason: 1} and len(out) == 2


def test_generic_csv_leading_zero_ids_stay_strings(tmp_path):
    p = _write(tmp_path, "log.csv", [b"007,1,5,1", b"7,1,5,2", b" 7 ,2,1,3"])
    out, _ = read_interactions_csv(p, {"user": 0, "item": 1, "rating": 2, "time": 3}, fmt=CsvFormat(has_header=False))
    np.testing.assert_array_equal(out.user_ids, ["007", "7"])  # surrounding whitespace is stripped
    np.testing.assert_array_equal(out.user, [0, 1, 1])
    np.testing.assert_array_equal(out.item, [1, 1, 2])
    with _raises(p, 1, "column 4 (0-based) does not exist; the line has 4 fields"):
        read_interactions_csv(p, {"user": 0, "item": 1, "rating": 2, "time": 4}, fmt=CsvFormat(has_header=False))


def test_generic_csv_column_errors(tmp_path):
    p = _write(tmp_path, "log.csv", GENERIC)
    with _raises(p, 1, "the header has no column 'user'"):
        read_interactions_csv(p, {"user": "user", "item": "iid", "rating": "stars", "time": "ts"})
    with pytest.raises(ValueError, match="exactly one of 'rating'"):
        read_interactions_csv(p, {"user": "uid", "item": "iid", "time": "ts"})
    with pytest.raises(ValueError, match="no header"):
        read_interactions_csv(p, {"user": "uid", "item": "iid", "rating": "stars", "time": "ts"}, fmt=CsvFormat(has_header=False))
    rows = list(GENERIC)
    rows[3] = b"u2,i3,x,300,Action"
    p = _write(tmp_path, "log.csv", rows)
    with _raises(p, 4, "field 'stars' must be a finite number, got 'x'"):
        read_interactions_csv(p, {"user": "uid", "item": "iid", "rating": "stars", "time": "ts"})


# ============================================================================================== config + dispatch

NEW_CONFIGS = {"movielens1m.yaml": "movielens1m", "movielens20m.yaml": "movielens_csv", "amazon.yaml": "amazon",
               "taobao.yaml": "taobao", "csv_example.yaml": "csv"}


@pytest.mark.parametrize("name, source", NEW_CONFIGS.items())
def test_config_files_load(name, source):
    cfg = load(REPO / "configs" / name)
    assert cfg.data.source == source


def _with_data(csv=None, taobao=None, **kw) -> Config:
    cfg = Config()
    d = cfg.data
    blocks = {"csv": dataclasses.replace(d.csv, **(csv or {})), "taobao": dataclasses.replace(d.taobao, **(taobao or {}))}
    return dataclasses.replace(cfg, data=dataclasses.replace(d, **blocks, **kw))


@pytest.mark.parametrize("data, key", [
    ({"taobao": {"label_behaviors": ["pv", "click"]}}, "data.taobao.label_behaviors"),
    ({"taobao": {"label_behaviors": []}}, "data.taobao.label_behaviors"),
    ({"taobao": {"label_behaviors": ["pv", "buy", "cart", "fav"]}}, "data.taobao.label_behaviors"),
    ({"csv": {"target": "score"}}, "data.csv.target"),
    ({"csv": {"delimiter": ";;"}}, "data.csv.delimiter"),
    ({"csv": {"delimiter": '"'}}, "data.csv.delimiter"),
    ({"source": "csv"}, "data.csv.columns"),
    ({"source": "csv", "csv": {"columns": ["a", "b", "c"]}}, "data.csv.columns"),
    ({"source": "csv", "csv": {"columns": ["a", "b", "a", "d"]}}, "data.csv.columns"),
    ({"source": "csv", "csv": {"columns": ["a", "b", "c", "d"], "has_header": False}}, "data.csv.columns"),
    ({"source": "csv", "csv": {"columns": ["0", "1", "2", "3", "4"], "has_header": False, "delimiter": "|"}},
     "data.csv.delimiter"),
    ({"source": "parquet"}, "data.source"),
    ({"skip_bad_rows": "yes"}, "data.skip_bad_rows"),
])
def test_config_validation(data, key):
    from coda_jax.config import from_dict

    with pytest.raises(ConfigError, match=re.escape(key)):
        from_dict({"data": data}, "test.yaml")


OLD_KEYS = {"meta_path": "data.amazon.meta_path", "label_behaviors": "data.taobao.label_behaviors",
            "implicit_labels": "data.taobao.implicit_labels", "negatives": "data.taobao.negatives",
            "columns": "data.csv.columns", "csv_target": "data.csv.target", "has_header": "data.csv.has_header",
            "delimiter": "data.csv.delimiter"}


@pytest.mark.parametrize("old, new", OLD_KEYS.items())
def test_old_flat_source_keys_name_their_new_place(old, new, tmp_path):
    from coda_jax.config import with_overrides

    p = tmp_path / "old.yaml"
    p.write_text(f"data:\n  source: csv\n  {old}: x\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(p))}: data.{old}: moved to {re.escape(new)}$"):
        load(p)
    with pytest.raises(ConfigError, match=f"--set 'data.{old}=x': data.{old} moved to {re.escape(new)}$"):
        with_overrides(Config(), [f"data.{old}=x"])


def test_dispatch_records_dropped_rows(tmp_path):
    rng = np.random.default_rng(1)
    rows = [f"{u},{rng.integers(1, 30)},{rng.integers(1, 5)},{b},{1000 + 10 * k}".encode()
            for u in (1, 2, 3)  # each user's 2 test rows (the latest) are a buy and a pv: both classes
            for k, b in enumerate(["pv", "buy", "cart", "fav", "pv", "pv", "pv", "cart", "fav", "pv", "buy", "pv"])]
    rows.insert(5, b"1,1,1,click,5")
    p = _write(tmp_path, "UserBehavior.csv", rows)
    cfg = _with_data(source="taobao", path=str(p), min_rows_per_user=2,
                     taobao={"label_behaviors": ("buy",), "implicit_labels": "behaviors"})
    with _raises(p, 6, "'click'"):
        load_interactions(cfg)
    cfg = _with_data(source="taobao", path=str(p), min_rows_per_user=2, skip_bad_rows=True,
                     taobao={"label_behaviors": ("buy",), "implicit_labels": "behaviors"})
    data = make_dataset(cfg)
    assert data.info["dropped_rows"] == {"unknown_behavior": 1}
    assert data.info["rows"] == 36
    assert data.table.label.sum() == 6  # only buy is positive
    with pytest.raises(ConfigError, match="data.path"):
        load_interactions(_with_data(source="amazon"))
    with pytest.raises(ConfigError, match="data.data_dir"):
        load_interactions(_with_data(source="movielens_csv"))


def test_dispatch_generic_csv_and_synthetic_has_no_drops(tmp_path):
    p = _write(tmp_path, "log.csv", [b"u,i,r,t"] + [f"{u},{i},{(u + i) % 5 + 1},{i}".encode()
                                                     for u in range(3) for i in range(1, 9)])
    cfg = _with_data(source="csv", path=str(p), csv={"columns": ("u", "i", "r", "t")}, min_rows_per_user=2)
    inter = load_interactions(cfg)
    assert len(inter) == 24 and inter.num_users == 3 and inter.num_items == 8
    assert make_dataset(cfg).info["dropped_rows"] == {}
    cfg = _with_data(source="csv", path=str(p), csv={"columns": ("0", "1", "2", "3"), "has_header": False},
                     min_rows_per_user=2, skip_bad_rows=True)
    assert make_dataset(cfg).info["dropped_rows"] == {"bad_rating": 1}  # the header line, read as data


# ============================================================================================== issue 11

BOM = b"\xef\xbb\xbf"


def _prepend_bom(p: Path) -> None:
    """Put a UTF-8 byte-order mark before the first byte of the file's text (inside the gzip stream of .gz)."""
    if p.name.endswith(".gz"):
        p.write_bytes(gzip.compress(BOM + gzip.decompress(p.read_bytes())))
    else:
        p.write_bytes(BOM + p.read_bytes())


def _bom_case(tmp_path: Path, case: str):
    """(the file that gets a BOM, a call reading the dataset) for one reader."""
    if case.startswith("ml1m:"):
        d = _ml1m(tmp_path)
        return d / case[5:], lambda: read_movielens1m(d, block_bytes=16)
    if case.startswith("mlcsv:"):
        d = _mlcsv(tmp_path)
        return d / case[6:], lambda: read_movielens_csv(d, block_bytes=16)
    if case.startswith("amazon:"):
        name = case[7:]
        p = _write(tmp_path, name, AMZ_CSV if name.endswith(".csv") else AMZ_REVIEWS)
        meta = _write(tmp_path, "meta.json", AMZ_META)
        return (p, lambda: read_amazon(p, meta_path=meta, block_bytes=16))
    if case == "amazon_meta":
        p = _write(tmp_path, "reviews.json", AMZ_REVIEWS)
        meta = _write(tmp_path, "meta.json", AMZ_META)
        return meta, lambda: read_amazon(p, meta_path=meta)
    if case == "taobao":
        p = _write(tmp_path, "UserBehavior.csv", TAOBAO)
        return p, lambda: read_taobao(p, block_bytes=16)
    if case == "csv_header":
        p = _write(tmp_path, "log.csv", GENERIC)
        cols = {"user": "uid", "item": "iid", "rating": "stars", "time": "ts", "genre": "tags"}
        return p, lambda: read_interactions_csv(p, cols, block_bytes=16)
    assert case == "csv_no_header"
    p = _write(tmp_path, "log.csv", AMZ_CSV)  # string ids: a BOM kept would make line 1's user a new user
    return p, lambda: read_interactions_csv(p, {"user": 0, "item": 1, "rating": 2, "time": 3}, fmt=CsvFormat(has_header=False),
                                            block_bytes=16)


@pytest.mark.parametrize("case", ["ml1m:ratings.dat", "ml1m:movies.dat", "ml1m:users.dat", "mlcsv:ratings.csv",
                                  "mlcsv:movies.csv", "amazon:reviews.json", "amazon:reviews.json.gz",
                                  "amazon:ratings.csv", "amazon_meta", "taobao", "csv_header", "csv_no_header"])
def test_utf8_bom_at_file_start_is_ignored_by_every_reader(tmp_path, case):
    path, read = _bom_case(tmp_path, case)
    plain, plain_rep = read()
    _prepend_bom(path)
    out, rep = read()
    assert rep.counts == plain_rep.counts
    for field in ("user", "item", "label", "time", "item_genres", "user_ids"):
        np.testing.assert_array_equal(getattr(out, field), getattr(plain, field), err_msg=field)
    assert out.num_genres == plain.num_genres


def test_utf8_bom_at_file_start_taobao_was_the_reported_failure(tmp_path):
    p = _write(tmp_path, "UserBehavior.csv", TAOBAO)
    _prepend_bom(p)
    out, rep = read_taobao(p)
    assert rep.counts == {} and len(out) == 7
    np.testing.assert_array_equal(out.user_ids, [7, 100])  # line 1's user 100 parsed, not '\ufeff100'


@pytest.mark.parametrize("bad, parts", [
    (b"[" * 100_000, ("not valid JSON: nested too deeply",)),
    (b'{"reviewerID": ' + b"[" * 100_000, ("not valid JSON: nested too deeply",)),
    (b"{[1]: 2}", ("not valid JSON",)),
    (b'{"reviewerID": "A14\xff\xfe", "asin": "0000013714", "overall": 3.0, "unixReviewTime": 1}',
     ("not valid JSON", "utf-8")),
], ids=["deep_list", "deep_value", "list_key", "not_utf8"])
def test_amazon_json_unparseable_line_is_a_data_error_or_counted(tmp_path, bad, parts):
    reviews = list(AMZ_REVIEWS)
    reviews[1] = bad
    p = _write(tmp_path, "reviews.json", reviews)
    with _raises(p, 2, *parts):
        read_amazon(p)
    out, rep = read_amazon(p, skip_bad_rows=True)
    assert rep.counts == {"bad_fields": 1} and rep.first == {"bad_fields": f"{p} line 2"}
    assert len(out) == 4


def test_amazon_json_timestamp_outside_int64(tmp_path):
    reviews = list(AMZ_REVIEWS)
    reviews[2] = b'{"reviewerID": "A2", "asin": "B000ABC", "overall": 4.0, "unixReviewTime": 1' + b"0" * 30 + b"}"
    p = _write(tmp_path, "reviews.json", reviews)
    with _raises(p, 3, "field 'unixReviewTime' is out of the int64 range"):
        read_amazon(p)
    out, rep = read_amazon(p, skip_bad_rows=True)
    assert rep.counts == {"bad_value": 1} and len(out) == 4


@pytest.mark.parametrize("bad, parts", [
    (b"[" * 100_000, ("not a JSON (or Python literal) object: nested too deeply",)),
    (b"{[1]: 2}", ("not a JSON (or Python literal) object",)),  # a Python literal with an unhashable key
    (b"{'asin': " + b"(" * 100_000, ("not a JSON (or Python literal) object",)),
], ids=["deep_list", "list_key", "deep_literal"])
def test_amazon_meta_unparseable_line_is_a_data_error_or_counted(tmp_path, bad, parts):
    p = _write(tmp_path, "reviews.json", AMZ_REVIEWS)
    meta = _write(tmp_path, "meta.json", AMZ_META[:2] + [bad] + AMZ_META[2:])
    with _raises(meta, 3, *parts):
        read_amazon(p, meta_path=meta)
    out, rep = read_amazon(p, meta_path=meta, skip_bad_rows=True)
    assert rep.counts == {"bad_meta": 1} and rep.first == {"bad_meta": f"{meta} line 3"}
    _check_amazon(out, genres=True)  # the good metadata lines still give every genre


def test_corrupt_or_truncated_gzip_is_a_data_error(tmp_path):
    rows = [b"%d,%d,3,pv,%d" % (u, i, 1000 + i) for u in range(20) for i in range(40)]
    data = gzip.compress(_lines(rows))
    bad = bytearray(data)
    bad[10] = 0xFF  # the first deflate block's type becomes the reserved 0b11: zlib.error
    p = tmp_path / "UserBehavior.csv.gz"
    p.write_bytes(bytes(bad))
    with _raises(p, 1, "cannot read file", "invalid block type"):
        read_taobao(p)
    p.write_bytes(data[: len(data) // 2])  # truncated: EOFError part-way through
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))} line \d+: cannot read file from here on"):
        read_taobao(p, block_bytes=256)
    reviews = gzip.compress(_lines(AMZ_REVIEWS * 40))
    p = tmp_path / "reviews.json.gz"
    p.write_bytes(reviews[: len(reviews) // 2])
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))} line \d+: cannot read file from here on"):
        read_amazon(p)


def test_csv_line_the_csv_module_rejects_is_a_data_error(tmp_path):
    rows = list(GENERIC)
    rows[2] = b'u1,"i3",2,2\r00,'  # a lone carriage return inside an unquoted field (csv.Error)
    p = _write(tmp_path, "log.csv", rows)
    cols = {"user": "uid", "item": "iid", "rating": "stars", "time": "ts"}
    with _raises(p, 3, "malformed CSV line", "new-line character"):
        read_interactions_csv(p, cols)


def test_metadata_id_beyond_int64_is_a_data_error(tmp_path):
    d = _ml1m(tmp_path, users=[ML1M_USERS[0], b"12345678901234567890::M::56::16::70072", ML1M_USERS[2]])
    with _raises(d / "users.dat", 2, "field 'user id' must be a non-negative integer", "'12345678901234567890'"):
        read_movielens1m(d)
    movies = list(MLCSV_MOVIES)
    movies[3] = b"99999999999999999999,Big (1988),Comedy"
    d = _mlcsv(tmp_path, movies=movies)
    with _raises(d / "movies.csv", 4, "field 'movieId' must be a non-negative integer", "'99999999999999999999'"):
        read_movielens_csv(d)


def test_ml1m_control_byte_0x1f_is_not_taken_for_a_separator(tmp_path):
    # '::' is split by substituting one byte; a 0x1f already in the line used to count as a separator,
    # so this 3-field line parsed as user 5, item 10.
    ratings = list(ML1M_RATINGS)
    ratings[0] = b"5\x1f10::5::978300760"
    d = _ml1m(tmp_path, ratings=ratings)
    with _raises(d / "ratings.dat", 1, "expected 4 '::'-separated fields", "got 3"):
        read_movielens1m(d)
    out, rep = read_movielens1m(d, skip_bad_rows=True)
    assert rep.counts == {"bad_fields": 1} and len(out) == 4


def test_non_utf8_bytes_are_a_data_error_naming_the_line(tmp_path):
    movies = list(MLCSV_MOVIES)
    movies[2] = b'11,"American President, The (1995)\xff",Comedy'
    d = _mlcsv(tmp_path, movies=movies)
    with _raises(d / "movies.csv", 3, "cannot decode as utf-8"):
        read_movielens_csv(d)
    rows = list(GENERIC)
    rows[3] = b'"u2","i3\xc3",3,300,Action'  # a quoted line goes through the csv module: decoded first
    p = _write(tmp_path, "log.csv", rows)
    with _raises(p, 4, "cannot decode as utf-8"):
        read_interactions_csv(p, {"user": "uid", "item": "iid", "rating": "stars", "time": "ts"})
    rows = list(TAOBAO)
    rows[2] = b"100,25766\xff51,149192,cart,1511572885"
    p = _write(tmp_path, "UserBehavior.csv", rows)
    with _raises(p, 3, "field 'item_id' must be a non-negative integer", "'25766\ufffd51'"):
        read_taobao(p)
    out, rep = read_taobao(p, skip_bad_rows=True)
    assert rep.counts == {"bad_value": 1} and len(out) == 6
