"""Write a synthetic file in Taobao UserBehavior.csv's format (user_id,item_id,category_id,behavior,timestamp),
shaped like a small random sample of the real log: a long tail of items (most appear once or twice), users with
category tastes, pv for most rows and buy / cart / fav for a few. It is not Taobao data (none is shipped); it
lets the Taobao path be run and its labels compared without the download.

    python -m sims.taobao_sample OUT.csv [--users 2000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np


def make_sample(users: int = 2000, items: int = 60000, categories: int = 400, rows_per_user: tuple = (20, 80),
                seed: int = 0) -> np.ndarray:
    """Rows [n, 5] (user, item, category, behavior code 0..3 = pv/buy/cart/fav, timestamp), sorted by user,
    time."""
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, categories, size=items)
    popularity = rng.pareto(1.2, size=items) + 1.0
    cat_items = [np.flatnonzero(item_cat == c) for c in range(categories)]
    cat_weight = np.array([popularity[ix].sum() for ix in cat_items])
    out = []
    for u in range(users):
        n = rng.integers(rows_per_user[0], rows_per_user[1] + 1)
        liked = rng.choice(categories, size=5, replace=False, p=cat_weight / cat_weight.sum())
        cats = np.where(rng.random(n) < 0.7, rng.choice(liked, size=n), rng.choice(categories, size=n,
                                                                                     p=cat_weight / cat_weight.sum()))
        its = np.array([rng.choice(cat_items[c], p=popularity[cat_items[c]] / popularity[cat_items[c]].sum())
                        for c in cats])
        beh = rng.choice(4, size=n, p=[0.89, 0.02, 0.05, 0.04])
        t = np.sort(rng.integers(1511539200, 1512316800, size=n))     # 2017-11-25 .. 2017-12-03, as the real log
        out.append(np.stack([np.full(n, 100000 + u), 1000 + its, 5000 + item_cat[its], beh, t], axis=1))
    rows = np.concatenate(out)
    _, first = np.unique(rows, axis=0, return_index=True)           # no exact repeats
    return rows[np.sort(first)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rows = make_sample(a.users, seed=a.seed)
    names = np.array(["pv", "buy", "cart", "fav"])
    with open(a.out, "w") as f:
        for u, i, c, b, t in rows:
            f.write(f"{u},{i},{c},{names[b]},{t}\n")
    print(f"wrote {len(rows)} rows, {len(np.unique(rows[:, 0]))} users, {len(np.unique(rows[:, 1]))} items to {a.out}")


if __name__ == "__main__":
    main()
