"""Research code on coda-jax: its own CTR model, classifier, matching and method, its own data (a DataFrame)."""
import sys
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pandas as pd
import coda_jax as cj

class TwoTower(nn.Module):  # features -> (logit [B], representation [B, H]); tables named user_* / item_*
    num_users: int
    num_items: int
    dim: int = 8
    @nn.compact
    def __call__(self, f):
        u = nn.Embed(self.num_users, self.dim, name="user_embed")(f["user"])
        i = nn.Embed(self.num_items + 1, self.dim, name="item_embed")(f["item"])
        return (u * i).sum(-1) + nn.Dense(1, name="bias")(u + i)[:, 0], jnp.concatenate([u, i], -1)

def busiest(x):  # a matching: every user gets the users holding the most pool rows (itself left out)
    rows = np.diff(x.pool[0]).astype(np.float32)
    order = np.argsort(-rows, kind="stable")
    users = np.stack([order[order != s][: x.count] for s in x.sim_users])
    return users, rows[users]

cj.register_model("two-tower", lambda cfg, users, items, genres: TwoTower(users, items, cfg.embed_dim))
cj.register_classifier("wide-mlp", lambda cfg: nn.Sequential((nn.Dense(2 * cfg.hidden), nn.relu, nn.Dense(1),
                                                              lambda z: z[..., 0])))
cj.register_matching("busiest", busiest, description="the users with the most pool rows")
cj.register_method("coda-soft", lambda x: (x.candidates, x.candidates.mask * x.candidate_score * x.finetune.aug_weight))
rng = np.random.default_rng(0)                     # the data: 60 users of three tastes, 3,000 clicks, 20% noise
df = pd.DataFrame({"uid": rng.integers(0, 60, 3000), "iid": rng.integers(0, 120, 3000), "ts": rng.permutation(3000)})
df["click"] = (df.uid % 3 == df.iid % 3) ^ (rng.random(len(df)) < 0.2)
cfg = cj.with_overrides(cj.Config(), {"model.name": "two-tower", "classifier.kind": "wide-mlp",
                                      "retrieval.matching": "busiest", "methods": ["global", "local", "coda",
                                      "coda-soft"], "finetune.trainable": ["user"], "finetune.steps": 20,
                                      "classifier.steps": 20, "cloud.epochs": 5, "cloud.learning_rate": 0.03})
data = cj.make_dataset(cfg, cj.interactions_from_frame(df, user="uid", item="iid", label="click", timestamp="ts"))
results = cj.simulate(cfg, data=data, show_progress=False)
print(results.to_frame().to_string(max_rows=10, show_dimensions=True))   # every column, 10 rows
print("results written to", results.save(sys.argv[1] if len(sys.argv) > 1 else "runs/research_api"))
