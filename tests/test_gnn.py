"""LightGCN, sampling, trainer and artifacts on a tiny synthetic graph with planted structure."""
from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn.artifact import ARTIFACT_FILES, load_artifact, publish
from gnn.evaluate import evaluate, to_csr
from gnn.models.lightgcn import LightGCN
from gnn.sampling import NegativeSampler, TrainPairs, make_generator
from gnn.train import checkpoint_dir, seed_checkpoint, train, weight_average
from kg.snapshot import Interactions, Snapshot
from kgrec.config import DEFAULT_ID_WEIGHT_DECAY, Config, TrainConfig
from kgrec.pipeline import train_model

BLOCK = 20
NUM_ITEMS = 300  # items 0-19 community A, 20-39 community B, the rest rarely-seen noise


def planted_snapshot(num_users: int = 160, seed: int = 0) -> Snapshot:
    """Two user communities, each liking 12 items of its own 20-item block (8 train, 2 valid,
    2 test) plus one random noise item in train."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[int, int]]] = {"train": [], "valid": [], "test": []}
    for u in range(num_users):
        block = (u % 2) * BLOCK
        liked = block + rng.choice(BLOCK, 12, replace=False)
        rows["train"] += [(u, int(i)) for i in liked[:8]] + [(u, int(rng.integers(2 * BLOCK, NUM_ITEMS)))]
        rows["valid"] += [(u, int(i)) for i in liked[8:10]]
        rows["test"] += [(u, int(i)) for i in liked[10:]]

    def inter(pairs: list[tuple[int, int]]) -> Interactions:
        a = np.asarray(pairs, dtype=np.int64)
        n = len(a)
        return Interactions(a[:, 0], a[:, 1], np.ones(n, np.float32), np.zeros(n, np.int64), np.zeros(n, np.int16))

    return Snapshot(ids={"user": [f"u{u}" for u in range(num_users)], "item": [f"i{i}" for i in range(NUM_ITEMS)],
                         "query": [], "entity": []},
                    entity_types=[], item_titles=[""] * NUM_ITEMS, item_descriptions=[""] * NUM_ITEMS,
                    query_texts=[], entity_names=[], splits={s: inter(p) for s, p in rows.items()},
                    meta={"name": "planted"})


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(embedding_dim=16, num_layers=2, lr=0.02, weight_decay=1e-4, batch_size=256, epochs=15,
                patience=5, ks=[10, 20], seed=7, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_lightgcn_shapes_and_adjacency(layers: int) -> None:
    user = np.array([0, 0, 1, 2, 2])
    item = np.array([0, 1, 1, 2, 2])  # duplicate (2, 2) collapses
    adj = LightGCN.build_adjacency(user, item, 3, 4)
    dense = adj.to_dense()
    assert torch.allclose(dense, dense.t())
    # edge (u0, i0): deg(u0) = 2, deg(i0) = 1 -> 1/sqrt(2)
    assert dense[0, 3].item() == pytest.approx(2 ** -0.5)
    assert dense[2, 5].item() == pytest.approx(1.0)  # deg(u2) = deg(i2) = 1
    for bad in ((user, item + 2), (user + 1, item), (user - 1, item)):  # (u0, i3) would read as (u1, i0)
        with pytest.raises(ValueError, match="index outside"):
            LightGCN.build_adjacency(*bad, 3, 4)
    model = LightGCN(3, 4, embedding_dim=8, num_layers=layers)
    ue, ie = model.get_embedding(adj)
    assert ue.shape == (3, 8) and ie.shape == (4, 8)
    scores = model(adj, torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert scores.shape == (2,)
    top = model.recommend(adj, torch.tensor([0, 1, 2]), k=2)
    assert top.shape == (3, 2)
    loss = model.loss(adj, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([3, 3]))
    loss.backward()
    assert model.embedding.weight.grad is not None and loss.item() > 0
    assert "LightGCN(users=3, items=4" in repr(model)
    # gradient of the symmetric custom spmm matches autograd through a dense matrix
    x = torch.randn(7, 3, requires_grad=True)
    from gnn.models.lightgcn import _SymmetricSpMM
    _SymmetricSpMM.apply(adj, x).pow(2).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    (dense @ x2).pow(2).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)


@pytest.mark.parametrize("layers, user, pos, neg", [(1, 2.0, 2.0, -1.0), (2, 5 / 3, 7 / 3, -2 / 3)])
def test_lightgcn_propagation_and_bpr_loss_match_hand_computed_values(layers: int, user: float, pos: float,
                                                                      neg: float) -> None:
    r"""One user, two items, one interaction (u0, i0); d = 1 with ego embeddings u0 = 1, i0 = 3, i1 = -2.
    Â swaps u0 and i0 (both of degree 1) and zeroes the isolated i1, so the layers are
    [1, 3, -2] -> [3, 1, 0] -> [1, 3, 0] and the layer means are (L=1) [2, 2, -1], (L=2) [5/3, 7/3, -2/3].
    BPR for (u0, i0, i1) is softplus(e_u e_n - e_u e_p) and the L2 term λ/2 (1² + 3² + (-2)²) = 7λ."""
    adj = LightGCN.build_adjacency(np.array([0]), np.array([0]), 1, 2)
    model = LightGCN(1, 2, embedding_dim=1, num_layers=layers)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor([[1.0], [3.0], [-2.0]]))
    ue, ie = model.get_embedding(adj)
    assert ue.flatten().tolist() == pytest.approx([user])
    assert ie.flatten().tolist() == pytest.approx([pos, neg])
    loss = model.loss(adj, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), reg_weight=0.01)
    expected = np.log1p(np.exp(user * neg - user * pos)) + 0.01 * 7
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # two copies of the same triple: the mean BPR term and the per-example L2 term are unchanged
    twice = model.loss(adj, torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([1, 1]), reg_weight=0.01)
    assert twice.item() == pytest.approx(expected, rel=1e-6)


def test_lightgcn_embeddings_match_pyg_lightgcn_on_the_same_graph() -> None:
    """The same ego weights and interactions give PyG's own LightGCN's layer-mean embeddings."""
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    rng = np.random.default_rng(3)
    num_users, num_items = 30, 40
    key = np.unique(rng.integers(0, num_users * num_items, 200))
    user, item = key // num_items, key % num_items
    ours = LightGCN(num_users, num_items, embedding_dim=8, num_layers=3)
    pyg = PygLightGCN(num_users + num_items, embedding_dim=8, num_layers=3)
    with torch.no_grad():
        pyg.embedding.weight.copy_(ours.embedding.weight)
    ue, ie = ours.get_embedding(LightGCN.build_adjacency(user, item, num_users, num_items))
    edges = torch.from_numpy(np.stack([user, item + num_users]))
    expected = pyg.get_embedding(torch.cat([edges, edges.flip(0)], dim=1))
    assert torch.allclose(torch.cat([ue, ie]), expected, atol=1e-5)


def test_lightgcn_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        LightGCN(0, 3)
    with pytest.raises(ValueError):
        LightGCN(2, 3, num_layers=-1)


@pytest.mark.parametrize("strategy", ["uniform", "popularity", "hard"])
def test_negative_sampler_avoids_positives(strategy: str) -> None:
    train_csr = to_csr(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3]), 2, 6)
    s = NegativeSampler(TrainPairs(train_csr), strategy, make_generator(0), chunk=64)
    users = torch.zeros(500, dtype=torch.long)
    emb = (torch.randn(2, 4), torch.randn(6, 4)) if strategy == "hard" else (None, None)
    neg = s.sample(users, *emb)
    assert neg.shape == (500,) and neg.dtype == torch.long
    assert not torch.isin(neg, torch.tensor([0, 1, 2])).any()
    if strategy == "popularity":
        # item 3 is the only other item with degree > 0, so it dominates
        assert (neg == 3).double().mean() > 0.9
    if strategy == "hard":
        # user 0's best candidate among its three negatives (3, 4, 5) is drawn almost always
        best = 3 + int((emb[1][3:] @ emb[0][0]).argmax())
        assert (neg == best).double().mean() > 0.85
    # the same seed draws the same negatives
    again = NegativeSampler(TrainPairs(train_csr), strategy, make_generator(0), chunk=64).sample(users, *emb)
    assert torch.equal(neg, again)
    with pytest.raises(ValueError):
        NegativeSampler(TrainPairs(train_csr), "nope", make_generator(0))


def test_a_time_budget_spent_before_any_evaluation_publishes_nothing(tmp_path: Path) -> None:
    from gnn.train import train

    snap = planted_snapshot(num_users=40)
    artifact = train(snap, tiny_cfg(epochs=10, eval_every=5), tmp_path, progress=False, max_time_s=0)
    assert (artifact / "embeddings.npz").is_file() and not (tmp_path / "current").exists()
    again = train(snap, tiny_cfg(epochs=10, eval_every=5), tmp_path, progress=False)  # resumes, evaluates
    assert (tmp_path / "current").resolve() == again.resolve()


def test_lightgcn_embeds_items_without_training_events_from_their_text(tmp_path: Path) -> None:
    """Items 0 (community A) and 20 (B) lose their training events: their untrained id embeddings
    would rank anywhere. Given side features (text saying which community), lightgcn embeds them
    with a ridge map fitted on the trained items, so each comes back to its community's users."""
    from dataclasses import replace

    from gnn.coldstart import concat_interactions
    from gnn.train import train
    from kg.snapshot import SPLITS

    snap = planted_snapshot()
    moved = {s: snap.splits[s] for s in SPLITS}
    tr = snap.splits["train"]
    out = np.isin(tr.item, [0, 20])
    moved["train"] = tr.take(~out)
    moved["test"] = concat_interactions([snap.splits["test"], tr.take(out)])
    snap = replace(snap, splits=moved)
    rng = np.random.default_rng(0)
    side = np.zeros((NUM_ITEMS, 8), np.float32)  # noise items have no text: they keep their embedding
    side[:BLOCK, 0], side[BLOCK:2 * BLOCK, 1] = 1.0, 1.0
    side[:2 * BLOCK, 2:] = 0.1 * rng.standard_normal((2 * BLOCK, 6))
    cfg = tiny_cfg(epochs=30, patience=30)
    asked = []
    art = train(snap, cfg, tmp_path / "text", progress=False,
                side_features=lambda rows: asked.append(len(rows)) or side[rows])
    plain = train(snap, cfg, tmp_path / "plain", progress=False)
    assert json.loads((art / "meta.json").read_text())["untrained_items_from_text"] == 2
    untrained = NUM_ITEMS - len(np.unique(snap.splits["train"].item))
    assert asked == [untrained, NUM_ITEMS - untrained]  # the rows it needs, not a catalogue's matrix
    assert "untrained_items_from_text" not in json.loads((plain / "meta.json").read_text())

    def rank_of_own_cold_item(artifact: Path) -> float:
        with np.load(artifact / "embeddings.npz") as z:
            users, items = z["user"], z["item"]
        ranks = [int(((users[u] @ items.T)[:2 * BLOCK] > users[u] @ items[20 * (u % 2)]).sum()) for u in range(len(users))]
        return float(np.mean(ranks))  # among the 40 community items

    # mid-field among its own community's 20 (10.9 here), not down with the other community's (27.9)
    assert rank_of_own_cold_item(art) < 15 and rank_of_own_cold_item(plain) > 20
    with np.load(art / "embeddings.npz") as a, np.load(plain / "embeddings.npz") as b:
        assert np.array_equal(a["item"][2 * BLOCK:], b["item"][2 * BLOCK:])  # no text: untouched
    metrics = json.loads((art / "metrics.json").read_text())
    assert metrics["test"]["recall@20"] > json.loads((plain / "metrics.json").read_text())["test"]["recall@20"]
    # the same weights without the map, as history and best_score scored them: the plain run's figures
    assert metrics["test_before_map"] == json.loads((plain / "metrics.json").read_text())["test"]


def test_a_run_on_the_same_data_as_a_live_one_keeps_to_its_own_checkpoints(tmp_path: Path, caplog) -> None:
    """A retrain and a `kgrec train` on the same data share a checkpoint fingerprint: the train
    resumed from the retrain's checkpoint (publishing its half-trained weights as its own), then
    deleted the directory under it. A run whose directory a live process owns trains afresh in a
    private one, removed at its end, and leaves the other's alone."""
    import subprocess
    import sys

    from gnn.train import _claimed_checkpoint_dir, checkpoint_dir, train

    snap = planted_snapshot(num_users=40)
    cfg = tiny_cfg(epochs=2, eval_every=1)
    train_csr = to_csr(snap.splits["train"].user, snap.splits["train"].item, snap.num_users, snap.num_items)
    shared = checkpoint_dir(tmp_path, cfg, train_csr, None, snapshot=snap)
    shared.mkdir(parents=True)
    holds = ("import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
             "f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(120)")
    other = subprocess.Popen([sys.executable, "-c", holds, str(shared / "owner")], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        (shared / "last.pt").write_bytes(b"the other run's weights")  # would not even load: never read
        art = train(snap, cfg, tmp_path, progress=False)
        assert json.loads((art / "meta.json").read_text())["epochs_run"] == 2
        assert (shared / "last.pt").read_bytes() == b"the other run's weights"
        assert f"another run (pid {other.pid}) is training on the same data" in caplog.text
        assert sorted(p.name for p in (tmp_path / ".checkpoints").iterdir()) == [shared.name]  # private one gone
    finally:
        other.kill()
        other.wait()
    with _claimed_checkpoint_dir(shared) as mine:  # its holder is gone: taken over, and resumable
        assert mine == shared and (shared / "owner").read_text() == str(os.getpid())
        # two runs that find a killed run's directory at once: one takes it, the other goes private
        # (a pid check let both take it)
        with _claimed_checkpoint_dir(shared) as second:
            assert second != shared and second.name == f"{shared.name}-pid{os.getpid()}"
    with _claimed_checkpoint_dir(shared) as again:  # released when the run ends
        assert again == shared


def test_progress_shows_each_evaluations_score(tmp_path: Path, capsys) -> None:
    """With progress on, each evaluated epoch prints its validation score and the best so far
    (to stderr: `kgrec train` prints its JSON to stdout)."""
    from gnn.train import train

    train(planted_snapshot(num_users=40), tiny_cfg(epochs=4, eval_every=2), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"epoch 2: loss \d\.\d{4}, valid ndcg@20 \d\.\d{4} \(best \d\.\d{4} at epoch 2\)", err)
    assert "epoch 4: loss" in err and "epoch 3: loss" not in err


def test_weights_made_nan_by_an_epochs_last_step_stop_the_run_unpublished(tmp_path: Path, monkeypatch) -> None:
    """Each batch's loss is taken before its step, so the epoch's last step can turn the weights
    NaN under a finite epoch loss: the run stops there, before evaluating or publishing them."""
    from gnn.train import TrainingError

    snap = planted_snapshot(num_users=40)  # 360 training pairs: two batches of 256 an epoch
    real_loss, calls = LightGCN.loss, []

    def poisoned(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first epoch's last batch: its step writes NaN into every row it touches
            self.embedding.weight.register_hook(lambda grad: torch.full_like(grad, float("nan")))
        return real_loss(self, *args, **kwargs)

    monkeypatch.setattr(LightGCN, "loss", poisoned)
    with pytest.raises(TrainingError, match="diverged at epoch 1"):
        train(snap, tiny_cfg(epochs=3, eval_every=1), tmp_path, progress=False)
    assert len(calls) == 2 and not (tmp_path / "current").exists()


def test_a_batch_the_fp16_loss_scaler_skips_is_no_divergence(tmp_path: Path, monkeypatch) -> None:
    """Under fp16 autocast (GPUs before Ampere) a batch's loss can overflow: the loss scaler skips
    its step and training goes on. Without the scaler, one non-finite loss is divergence."""
    from gnn.train import TrainingError

    class Fp16Scaler:  # torch.amp.GradScaler's contract, as on a CUDA fp16 run: skip a step with inf grads
        def __init__(self, *args, **kwargs) -> None:
            pass

        def is_enabled(self) -> bool:
            return True

        def scale(self, loss: torch.Tensor) -> torch.Tensor:
            return loss

        def step(self, optimizer: torch.optim.Optimizer) -> None:
            grads = [q.grad for g in optimizer.param_groups for q in g["params"] if q.grad is not None]
            if all(bool(g.isfinite().all()) for g in grads):
                optimizer.step()

        def update(self) -> None:
            pass

        def state_dict(self) -> dict:
            return {}

    snap = planted_snapshot(num_users=40)  # 360 training pairs: two batches of 256 an epoch
    real_loss, calls = LightGCN.loss, []

    def overflowing(self, *args, **kwargs):
        calls.append(1)
        loss = real_loss(self, *args, **kwargs)
        return loss * float("inf") if len(calls) == 2 else loss

    monkeypatch.setattr(LightGCN, "loss", overflowing)
    with pytest.raises(TrainingError, match="diverged at epoch 1"):
        train(snap, tiny_cfg(epochs=2, eval_every=1), tmp_path / "fp32", progress=False)
    calls.clear()
    monkeypatch.setattr(torch.amp, "GradScaler", Fp16Scaler)
    art = train(snap, tiny_cfg(epochs=2, eval_every=1), tmp_path / "fp16", progress=False)
    history = json.loads((art / "metrics.json").read_text())["history"]
    assert history[0]["overflow_pairs"] == 360 - 256 and "overflow_pairs" not in history[1]
    assert all(np.isfinite(r["loss"]) for r in history)

def test_deterministic_kernels_are_switched_on_for_the_run_only(tmp_path: Path) -> None:
    """[train] deterministic turns torch's deterministic mode on while training and restores the
    caller's setting after, even when training fails; on the CPU the weights are the same either way."""
    from gnn.train import train

    snap = planted_snapshot(num_users=40)
    assert not torch.are_deterministic_algorithms_enabled()
    seen: dict[str, bool] = {}
    plain = train(snap, tiny_cfg(epochs=2, model="rgcn"), tmp_path / "plain", progress=False, resume=False,
                  epoch_hook=lambda e, row: seen.setdefault("plain", torch.are_deterministic_algorithms_enabled()))
    strict = train(snap, tiny_cfg(epochs=2, model="rgcn", deterministic=True), tmp_path / "strict", progress=False,
                   resume=False,
                   epoch_hook=lambda e, row: seen.setdefault("strict", torch.are_deterministic_algorithms_enabled()))
    assert seen == {"plain": False, "strict": True}  # on while training, and only then
    assert not torch.are_deterministic_algorithms_enabled()
    with np.load(plain / "embeddings.npz") as a, np.load(strict / "embeddings.npz") as b:
        np.testing.assert_array_equal(a["item"], b["item"])
    with pytest.raises(ValueError, match="batch_size"):
        train(snap, tiny_cfg(batch_size=0, deterministic=True), tmp_path / "bad", progress=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_a_heavy_user_never_gets_a_positive_as_negative(strategy: str) -> None:
    """User 0 holds 196 of 200 items, the popular ones among them: rejection rounds leave many
    draws on positives, and those are drawn again from the four items the user does not hold."""
    rng = np.random.default_rng(0)
    users = np.concatenate([np.zeros(196, np.int64), np.repeat(np.arange(1, 41), 5)])
    items = np.concatenate([np.arange(196), rng.integers(0, 50, 200)])
    pairs = TrainPairs(to_csr(users, items, 41, 200))
    free = torch.tensor([196, 197, 198, 199])
    assert pairs.non_positive(torch.zeros(4, dtype=torch.long), torch.arange(4)).tolist() == free.tolist()
    neg = NegativeSampler(pairs, strategy, make_generator(0), max_rounds=2).sample(torch.zeros(4000, dtype=torch.long))
    assert torch.isin(neg, free).all() and len(torch.unique(neg)) == 4

    full = TrainPairs(to_csr(np.zeros(3, np.int64), np.arange(3), 2, 3))  # user 0 holds every item
    neg = NegativeSampler(full, strategy, make_generator(0)).sample(torch.tensor([0, 1, 1]))
    assert neg.shape == (3,) and bool((neg[1:] < 3).all())


def test_train_pairs_read_a_raw_matrix_as_its_distinct_positives() -> None:
    """A CSR built by hand may repeat an item and store a zero: item 1 twice and a stored zero on
    item 3 leave positives {0, 1}, so the items the user does not hold are 2, 3 and 4."""
    import scipy.sparse as sp

    raw = sp.csr_matrix((np.array([1.0, 1.0, 0.0, 1.0]), np.array([1, 1, 3, 0]), np.array([0, 4])), shape=(1, 5))
    pairs = TrainPairs(raw)
    assert pairs.degree.tolist() == [2] and pairs.nnz == 2
    assert pairs.non_positive(torch.zeros(3, dtype=torch.long), torch.arange(3)).tolist() == [2, 3, 4]

def test_epoch_pairs_interaction_visits_each_pair_and_user_weighs_users_equally(tmp_path: Path) -> None:
    # user 0 has 9 training items, user 1 one item, user 2 none
    users = np.array([0] * 9 + [1])
    items = np.array(list(range(9)) + [9])
    train_csr = to_csr(users, items, 3, 10)
    pairs = TrainPairs(train_csr)
    assert pairs.is_positive(torch.tensor([0, 0, 1, 2]), torch.tensor([8, 9, 9, 0])).tolist() == [
        True, False, True, False]
    u, i = pairs.epoch_pairs("interaction", make_generator(0))
    assert sorted(zip(u.tolist(), i.tolist())) == sorted(zip(users.tolist(), items.tolist()))
    draws = [pairs.epoch_pairs("user", make_generator(s)) for s in range(400)]
    u = torch.cat([d[0] for d in draws]).numpy().copy()
    i = torch.cat([d[1] for d in draws]).numpy().copy()
    assert len(u) == 4000 and not (u == 2).any()
    assert train_csr[u, i].all()  # every drawn item is one of its user's training items
    # interaction sampling would give user 1 a tenth of the pairs; user sampling gives it half
    assert abs((u == 1).mean() - 0.5) < 0.03
    assert set(i[u == 0].tolist()) == set(range(9))
    with pytest.raises(ValueError, match="positive_sampling"):
        pairs.epoch_pairs("item", make_generator(0))
    with pytest.raises(ValueError, match="positive_sampling"):  # refused before any training
        train(planted_snapshot(), tiny_cfg(positive_sampling="item"), tmp_path, progress=False)
    for bad in ({"eval_every": 0}, {"patience": 0}, {"epochs": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            train(planted_snapshot(), tiny_cfg(**bad), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("positive_sampling", ["interaction", "user"])
def test_training_learns_planted_structure_and_writes_artifact(tmp_path: Path, positive_sampling: str) -> None:
    snap = planted_snapshot()
    cfg = tiny_cfg(positive_sampling=positive_sampling)
    art = train(snap, cfg, tmp_path, progress=False)
    assert sorted(p.name for p in art.iterdir()) == sorted(ARTIFACT_FILES)
    assert (tmp_path / "current").resolve() == art.resolve()
    a = load_artifact(tmp_path / "current")
    assert a.user_embeddings.shape == (160, 16) and a.item_embeddings.dtype == np.float32
    assert a.ids["item"][5] == "i5"
    assert list(a.train_items(0)) == sorted(a.train_items(0))
    for u in range(10):  # serving's exclusion list: every split's items, training ones included
        known = {int(i) for part in snap.splits.values() for i in part.item[part.user == u]}
        assert set(a.seen_items(u).tolist()) == known and set(a.train_items(u).tolist()) <= known
    assert len(a.seen_indices) == sum(len(part) for part in snap.splits.values()) > len(a.train_indices)
    older = Path(shutil.copytree(art, tmp_path / "older"))  # an artifact from before seen_items.npz
    (older / "seen_items.npz").unlink()
    assert list(load_artifact(older).seen_items(0)) == list(a.train_items(0))
    m = a.metrics["test"]
    # random ranking gives Recall@20 ~ 20/291 = 0.07; the planted block gives ~1
    assert m["recall@20"] > 0.6, m
    assert m["ndcg@20"] > 0.25, m
    assert a.metrics["eval_split"] == "valid" and len(a.metrics["history"]) >= 1
    assert a.meta["model"] == "lightgcn" and a.meta["version"] == art.name
    assert not list(tmp_path.glob(".tmp-*")) and not list((tmp_path / ".checkpoints").iterdir())
    # deterministic given the seed: bit for bit on CPU (README)
    art2 = train(snap, cfg, tmp_path, progress=False, publish_current=False)
    with np.load(art / "embeddings.npz") as z1, np.load(art2 / "embeddings.npz") as z2:
        np.testing.assert_array_equal(z1["item"], z2["item"])
        np.testing.assert_array_equal(z1["user"], z2["user"])
    assert (tmp_path / "current").resolve() == art.resolve()


class Boom(RuntimeError):
    pass


def test_killed_training_keeps_current_and_resumes(tmp_path: Path) -> None:
    snap = planted_snapshot(num_users=60)
    first = train(snap, tiny_cfg(epochs=2), tmp_path, progress=False)
    assert (tmp_path / "current").resolve() == first.resolve()

    def hook(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Boom("killed")

    cfg = tiny_cfg(epochs=4, seed=11)
    with pytest.raises(Boom):
        train(snap, cfg, tmp_path, epoch_hook=hook, progress=False)
    assert os.readlink(tmp_path / "current") == first.name
    assert not list(tmp_path.glob(".tmp-*"))
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".") and p.name != "current"]) == 1
    seen: list[int] = []
    second = train(snap, cfg, tmp_path, epoch_hook=lambda e, r: seen.append(e), progress=False)
    assert seen == [3, 4]  # resumed after the checkpoint of epoch 2
    hist = json.loads((second / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert (tmp_path / "current").resolve() == second.resolve()


def test_epochs_without_evaluation_checkpoint_at_most_every_minute(tmp_path: Path, monkeypatch) -> None:
    """A GPU epoch can be shorter than writing its checkpoint: the first epoch, epochs that
    evaluate and the last write one; the others only once CHECKPOINT_EVERY_S has passed. A run
    killed in between resumes from the last one written and ends as the uninterrupted run does."""
    import gnn.train

    monkeypatch.setattr(gnn.train, "CHECKPOINT_EVERY_S", 3600.0)
    snap = planted_snapshot(num_users=60)
    cfg = tiny_cfg(epochs=5, eval_every=3)

    def checkpointed(out: Path) -> int:
        (ckpt,) = (out / ".checkpoints").glob("*/last.pt")
        return torch.load(ckpt, weights_only=False)["epoch"]

    saved: list[int] = []
    whole = train(snap, cfg, tmp_path / "whole", progress=False,
                  epoch_hook=lambda e, r: saved.append(checkpointed(tmp_path / "whole")))
    assert saved == [1, 1, 3, 3, 5]

    def stop_at_2(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Boom("killed")

    with pytest.raises(Boom):
        train(snap, cfg, tmp_path / "cut", epoch_hook=stop_at_2, progress=False)
    assert checkpointed(tmp_path / "cut") == 1
    seen: list[int] = []
    resumed = train(snap, cfg, tmp_path / "cut", epoch_hook=lambda e, r: seen.append(e), progress=False)
    assert seen == [2, 3, 4, 5]
    with np.load(whole / "embeddings.npz") as z1, np.load(resumed / "embeddings.npz") as z2:
        np.testing.assert_allclose(z1["item"], z2["item"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("negative_sampling", ["uniform", "hard"])
def test_resumed_training_matches_an_uninterrupted_run(tmp_path: Path, negative_sampling: str) -> None:
    # the checkpoint carries the sampler's generator, so the resumed epochs draw the same triples
    snap = planted_snapshot(num_users=60)
    cfg = tiny_cfg(epochs=4, eval_every=1, negative_sampling=negative_sampling)
    whole = train(snap, cfg, tmp_path / "whole", progress=False)

    def stop_at_2(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Boom("killed")

    with pytest.raises(Boom):
        train(snap, cfg, tmp_path / "cut", epoch_hook=stop_at_2, progress=False)
    resumed = train(snap, cfg, tmp_path / "cut", progress=False)
    losses = [[r["loss"] for r in json.loads((a / "metrics.json").read_text())["history"]] for a in (whole, resumed)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    with np.load(whole / "embeddings.npz") as z1, np.load(resumed / "embeddings.npz") as z2:
        np.testing.assert_allclose(z1["item"], z2["item"], rtol=1e-5, atol=1e-6)


def test_seed_checkpoint_continues_a_run_under_a_new_batch_size_and_lr(tmp_path: Path) -> None:
    snap = planted_snapshot(num_users=60)
    tr = snap.splits["train"]
    train_csr = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    first = tiny_cfg(epochs=4)

    def stop_at_2(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Boom("stopped")

    with pytest.raises(Boom):
        train(snap, first, tmp_path / "a", epoch_hook=stop_at_2, progress=False)
    src = checkpoint_dir(tmp_path / "a", first, train_csr, snapshot=snap)
    cfg = tiny_cfg(epochs=4, batch_size=64, lr=0.005)
    dst = checkpoint_dir(tmp_path / "b", cfg, train_csr, snapshot=snap)
    assert dst.name != src.name  # another configuration, so train() alone would start afresh
    with pytest.raises(FileNotFoundError):
        seed_checkpoint(tmp_path / "nowhere", dst, cfg.lr)

    # a source that had already stopped early (killed before its artifact): the seeded run trains on
    state = torch.load(src / "last.pt", weights_only=False)
    torch.save({**state, "bad_evals": first.patience}, src / "last.pt")
    assert seed_checkpoint(src, dst, cfg.lr)
    seeded = torch.load(dst / "last.pt", weights_only=False)
    assert seeded["bad_evals"] == 0
    assert seeded["epoch"] == 2 and [g["lr"] for g in seeded["optimizer"]["param_groups"]] == [0.005]
    assert seeded["optimizer"]["state"]  # Adam's moments carry over
    assert not seed_checkpoint(src, dst, 0.1)  # the run's own checkpoint is never overwritten
    seen: list[int] = []
    art = train(snap, cfg, tmp_path / "b", epoch_hook=lambda e, r: seen.append(e), progress=False)
    assert seen == [3, 4]
    hist = json.loads((art / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert hist[:2] == json.loads((src / "history.json").read_text())
    assert json.loads((art / "config.json").read_text())["batch_size"] == 64


def test_the_code_version_is_kgrecs_commit_or_its_installed_version(tmp_path: Path, monkeypatch) -> None:
    """Installed (not editable) into a venv inside another git repository, the artifact recorded
    that repository's commit."""
    import subprocess
    from importlib.metadata import version

    import gnn.train
    from gnn.train import code_version

    checkout = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(gnn.train.__file__).parent,
                              capture_output=True, text=True).stdout.strip()
    assert code_version() == (checkout or version("kgrec"))  # this checkout's commit (a clone, as CI's)
    other = tmp_path / "project"
    (other / "venv" / "gnn").mkdir(parents=True)
    (other / "README").write_text("another project\n")
    for args in (["init", "-q"], ["add", "README"], ["-c", "user.name=x", "-c", "user.email=x@y", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=other, check=True)
    (other / "venv" / "gnn" / "train.py").write_text("")
    monkeypatch.setattr(gnn.train, "__file__", str(other / "venv" / "gnn" / "train.py"))
    assert code_version() == version("kgrec")


def test_a_checkpoint_seeded_from_a_run_on_other_data_is_refused(tmp_path: Path) -> None:
    """Only the shapes were checked: a run seeded from one on another snapshot of the same sizes
    carried that run's history and best weights, which it could publish as its own."""
    from gnn.train import TrainingError

    snap, other = planted_snapshot(num_users=60), planted_snapshot(num_users=60, seed=123)
    assert (snap.num_users, snap.num_items) == (other.num_users, other.num_items)
    first = tiny_cfg(epochs=4)

    def stop_at_2(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Boom("stopped")

    with pytest.raises(Boom):  # a finished run removes its checkpoint
        train(other, first, tmp_path / "a", epoch_hook=stop_at_2, progress=False)
    tr = other.splits["train"]
    src = checkpoint_dir(tmp_path / "a", first, to_csr(tr.user, tr.item, other.num_users, other.num_items),
                         snapshot=other)
    tr = snap.splits["train"]
    cfg = tiny_cfg(epochs=4, lr=0.005)
    dst = checkpoint_dir(tmp_path / "b", cfg, to_csr(tr.user, tr.item, snap.num_users, snap.num_items), snapshot=snap)
    assert seed_checkpoint(src, dst, cfg.lr)
    with pytest.raises(TrainingError, match="other data"):
        train(snap, cfg, tmp_path / "b", progress=False)
    assert not list((tmp_path / "b").glob("2*"))  # nothing published


def test_a_node_the_model_never_reads_leaves_its_checkpoint_resumable(tmp_path: Path, caplog) -> None:
    """The data fingerprint counted every node type: a new entity or query (which a plain LightGCN
    never reads) refused the checkpoint as another run's data, at every later run."""
    import dataclasses
    import logging

    snap = planted_snapshot(num_users=40)
    cfg = tiny_cfg(epochs=3)
    train(snap, cfg, tmp_path, max_time_s=0, progress=False)  # out of time after an epoch: the checkpoint stays
    grown = dataclasses.replace(snap, ids={**snap.ids, "entity": [*snap.ids["entity"], "brand:new"]})
    caplog.set_level(logging.INFO, logger="gnn.train")
    art = train(grown, cfg, tmp_path, progress=False)
    assert "resumed" in caplog.text and json.loads((art / "meta.json").read_text())["epochs_run"] == 3


def test_weight_averaging_evaluates_and_publishes_the_mean_of_the_epochs_weights(tmp_path: Path, monkeypatch) -> None:
    import gnn.train

    monkeypatch.setattr(gnn.train, "CHECKPOINT_EVERY_S", 0.0)  # every epoch's weights, though few evaluate
    snap = planted_snapshot(num_users=60)
    tr, va, te = (snap.splits[s] for s in ("train", "valid", "test"))
    train_csr = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    cfg = tiny_cfg(epochs=6, eval_every=5, swa_start=3)
    ckpt = checkpoint_dir(tmp_path, cfg, train_csr, snapshot=snap)
    assert ckpt == checkpoint_dir(tmp_path, tiny_cfg(epochs=6, eval_every=5), train_csr, snapshot=snap)  # same optimisation path
    live: dict[int, torch.Tensor] = {}

    def keep_weights(epoch: int, row: dict) -> None:  # the checkpoint of each epoch is written before the hook
        state = torch.load(ckpt / "last.pt", weights_only=False)
        live[epoch] = state["model"]["embedding.weight"].clone()
        assert row.get("swa_epochs") == (epoch - 2 if epoch >= 3 else None)
        if epoch == 4:
            torch.testing.assert_close(state["swa"]["module.embedding.weight"], (live[3] + live[4]) / 2)
            raise Boom("killed")  # the average survives a restart

    with pytest.raises(Boom):
        train(snap, cfg, tmp_path, epoch_hook=keep_weights, progress=False)
    art = train(snap, cfg, tmp_path, epoch_hook=keep_weights, progress=False)

    # evaluations at epochs 5 and 6 scored the means of epochs 3-5 and 3-6; the artifact is the better one
    metrics = json.loads((art / "metrics.json").read_text())
    best = metrics["best_epoch"]
    coo = train_csr.tocoo()
    adj = LightGCN.build_adjacency(coo.row, coo.col, snap.num_users, snap.num_items)
    ue, ie = propagate(snap, sum(live[e] for e in range(3, best + 1)) / (best - 2), adj)
    with np.load(art / "embeddings.npz") as z:
        np.testing.assert_allclose(z["user"], ue, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z["item"], ie, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ie, propagate(snap, live[best], adj)[1], atol=1e-4)  # not that epoch's own weights
    test_scores = evaluate(lambda u: torch.from_numpy(ue[u] @ ie.T), train_csr,
                           to_csr(te.user, te.item, snap.num_users, snap.num_items), [10, 20], snap.num_items,
                           exclude=to_csr(va.user, va.item, snap.num_users, snap.num_items))
    assert metrics["test"]["ndcg@20"] == pytest.approx(test_scores["ndcg@20"], abs=1e-6)  # the published weights


def test_weight_average_shares_the_text_buffer_and_copies_only_parameters(tmp_path: Path) -> None:
    from gnn.models.fused import FusedLightGCN

    adj = LightGCN.build_adjacency(np.array([0, 1, 2]), np.array([0, 1, 3]), 3, 400)
    model = FusedLightGCN(3, 400, torch.randn(400, 64), embedding_dim=8, num_layers=2, fusion="gate")
    swa = weight_average(model)
    assert swa.module.text is model.text  # one text matrix in memory, not two
    for (name, p), q in zip(model.named_parameters(), swa.module.parameters()):
        assert p.data_ptr() != q.data_ptr(), name
    first = model.embedding.weight.detach().clone()
    swa.update_parameters(model)
    with torch.no_grad():
        model.embedding.weight.add_(1.0)
    swa.update_parameters(model)
    torch.testing.assert_close(swa.module.embedding.weight, first + 0.5)
    averaged = copy.deepcopy(model)  # a model of its own holding the averaged weights propagates the same
    averaged.load_state_dict(swa.module.state_dict())
    torch.testing.assert_close(swa.module.get_embedding(adj)[1], averaged.get_embedding(adj)[1])
    # a checkpoint of both holds the text once: torch.save writes a shared storage once
    torch.save({"model": model.state_dict(), "swa": swa.state_dict()}, tmp_path / "both.pt")
    torch.save({"model": model.state_dict()}, tmp_path / "one.pt")
    text_bytes = model.text.numel() * 4
    assert (tmp_path / "both.pt").stat().st_size < (tmp_path / "one.pt").stat().st_size + text_bytes // 2
    restored = weight_average(model)
    restored.load_state_dict(torch.load(tmp_path / "both.pt", weights_only=False)["swa"])
    assert int(restored.n_averaged) == 2 and restored.module.text is model.text


def propagate(snap: Snapshot, ego: torch.Tensor, adj: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Final user and item embeddings of a 16-d, 2-layer LightGCN with ego embeddings ``ego``."""
    model = LightGCN(snap.num_users, snap.num_items, embedding_dim=16, num_layers=2)
    model.embedding.weight.data = ego
    with torch.no_grad():
        ue, ie = model.get_embedding(adj)
    return ue.numpy(), ie.numpy()


def test_publish_is_atomic_swap(tmp_path: Path, monkeypatch) -> None:
    snap = planted_snapshot(num_users=40)
    a = train(snap, tiny_cfg(epochs=1), tmp_path, progress=False)
    b = train(snap, tiny_cfg(epochs=1, seed=3), tmp_path, progress=False, publish_current=False)
    assert os.readlink(tmp_path / "current") == a.name
    real_replace, real_fsync, swaps, synced = os.replace, os.fsync, [], []

    def replace_spy(src, dst) -> None:  # at the moment of the swap, readers still see the old version
        assert Path(dst) == tmp_path / "current" and os.readlink(dst) == a.name
        assert os.readlink(src) == b.name
        assert len(synced) == sum(1 for f in b.iterdir() if f.is_file()) + 1  # the version is on disk first
        swaps.append(dst)
        real_replace(src, dst)

    def fsync_spy(fd) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace_spy)
    monkeypatch.setattr(os, "fsync", fsync_spy)
    publish(b, tmp_path)
    monkeypatch.undo()
    assert len(swaps) == 1 and os.readlink(tmp_path / "current") == b.name
    assert len(synced) == sum(1 for f in b.iterdir() if f.is_file()) + 2  # files, the version, the link's directory
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".current")]
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / "missing", tmp_path)
    assert os.readlink(tmp_path / "current") == b.name
    publish(tmp_path / "current", tmp_path)  # the version it names, not a link to itself
    assert os.readlink(tmp_path / "current") == b.name


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files through /proc")
def test_an_unpublished_version_is_on_disk_before_it_is_named(tmp_path: Path, monkeypatch) -> None:
    """A retrain whose gate keeps the old model leaves its version unpublished, for `serve --model`:
    written to disk all the same, as publish would have."""
    real_fsync, synced = os.fsync, []

    def fsync_spy(fd) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_spy)
    version = train(planted_snapshot(num_users=40), tiny_cfg(epochs=1), tmp_path, progress=False,
                    publish_current=False)
    monkeypatch.undo()
    assert {f.name for f in version.iterdir() if f.is_file()} <= {p.name for p in synced}
    assert tmp_path in synced  # the rename that names it, too
    assert not (tmp_path / "current").exists()


@pytest.mark.parametrize("fusion", ["sum", "concat", "gate"])
def test_fused_lightgcn_uses_text(fusion: str) -> None:
    from gnn.models.fused import FusedLightGCN

    adj = LightGCN.build_adjacency(np.array([0, 1, 2]), np.array([0, 1, 3]), 3, 4)
    text = torch.randn(4, 10)
    model = FusedLightGCN(3, 4, text, embedding_dim=8, num_layers=2, fusion=fusion)
    ue, ie = model.get_embedding(adj)
    assert ue.shape == (3, 8) and ie.shape == (4, 8)
    loss = model.loss(adj, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    loss.backward()
    assert model.text_proj.weight.grad is not None and model.text_proj.weight.grad.abs().sum() > 0
    assert f"fusion={fusion}" in repr(model)
    with pytest.raises(ValueError):
        FusedLightGCN(3, 4, torch.randn(5, 10))
    with pytest.raises(ValueError):
        FusedLightGCN(3, 4, text, fusion="nope")


def test_fused_training_run(tmp_path: Path) -> None:
    snap = planted_snapshot(num_users=80)
    text = np.zeros((NUM_ITEMS, 3), dtype=np.float32)
    text[:BLOCK, 0] = 1
    text[BLOCK:2 * BLOCK, 1] = 1
    text[2 * BLOCK:, 2] = 1
    art = train(snap, tiny_cfg(model="fused", fusion="gate", epochs=8), tmp_path, text_embeddings=text,
                progress=False)
    m = json.loads((art / "metrics.json").read_text())["test"]
    assert m["recall@20"] > 0.4, m
    # id_weight_decay unset: the artifact records fused's default, which it trained with
    assert json.loads((art / "config.json").read_text())["id_weight_decay"] == DEFAULT_ID_WEIGHT_DECAY["fused"]
    with pytest.raises(ValueError):
        train(snap, tiny_cfg(model="fused"), tmp_path, progress=False)
    with pytest.raises(ValueError):
        train(snap, tiny_cfg(model="nope"), tmp_path, progress=False)


def test_checkpoints_leave_out_the_text_features_and_old_ones_still_resume(tmp_path: Path) -> None:
    """The text features are the snapshot's constants: neither a checkpoint, nor its weight
    average, nor its best weights copy them. A checkpoint written when they did still resumes."""
    import torch

    snap = planted_snapshot(num_users=60)
    text = np.random.default_rng(0).standard_normal((NUM_ITEMS, 8)).astype(np.float32)
    cfg = tiny_cfg(model="fused", epochs=4, eval_every=1, swa_start=2)
    whole = train(snap, cfg, tmp_path / "whole", text_embeddings=text, progress=False)

    def stop_at_3(epoch: int, row: dict) -> None:
        if epoch == 3:
            raise Boom("killed")

    with pytest.raises(Boom):
        train(snap, cfg, tmp_path / "cut", text_embeddings=text, epoch_hook=stop_at_3, progress=False)
    (last,) = (tmp_path / "cut" / ".checkpoints").glob("*/last.pt")
    state = torch.load(last, weights_only=False)
    assert "text" not in state["model"] and "module.text" not in state["swa"] and "text" not in state["best_state"]
    old = torch.from_numpy(text)  # what a checkpoint of an earlier kgrec held
    state["model"]["text"], state["swa"]["module.text"], state["best_state"]["text"] = old, old, old
    torch.save(state, last)
    resumed = train(snap, cfg, tmp_path / "cut", text_embeddings=text, progress=False)
    losses = [[r["loss"] for r in json.loads((a / "metrics.json").read_text())["history"]] for a in (whole, resumed)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    with np.load(whole / "embeddings.npz") as z1, np.load(resumed / "embeddings.npz") as z2:
        np.testing.assert_allclose(z1["item"], z2["item"], rtol=1e-5, atol=1e-6)


def test_a_run_resumed_with_another_swa_start_starts_its_weight_average_afresh(tmp_path: Path, caplog) -> None:
    """The mean of epochs 3-4 (swa_start 3) was loaded under a new swa_start of 7: epochs 5 and 6
    scored that stale mean, and the published weights were the mean of epochs 3, 4, 7 and 8."""
    snap = planted_snapshot(num_users=40)

    def stop_at_4(epoch: int, row: dict) -> None:
        if epoch == 4:
            raise Boom("killed")

    with pytest.raises(Boom):
        train(snap, tiny_cfg(epochs=8, eval_every=1, swa_start=3, deterministic=True), tmp_path / "cut",
              epoch_hook=stop_at_4, progress=False)
    later = tiny_cfg(epochs=8, eval_every=1, swa_start=7, deterministic=True)
    resumed = train(snap, later, tmp_path / "cut", progress=False)
    whole = train(snap, later, tmp_path / "whole", progress=False)
    rows = [json.loads((a / "metrics.json").read_text())["history"] for a in (resumed, whole)]
    assert [r.get("swa_epochs") for r in rows[0][4:]] == [r.get("swa_epochs") for r in rows[1][4:]] == [None, None, 1, 2]
    assert [r["valid_ndcg@20"] for r in rows[0][4:]] == pytest.approx([r["valid_ndcg@20"] for r in rows[1][4:]], abs=1e-6)
    assert "average began at epoch 3, but swa_start is now 7: the average starts afresh" in caplog.text
    # an average that had not begun (swa_start 10, stopped at epoch 4) loses nothing: no warning
    caplog.clear()
    with pytest.raises(Boom):
        train(snap, tiny_cfg(epochs=8, eval_every=1, swa_start=10), tmp_path / "early", epoch_hook=stop_at_4,
              progress=False)
    with caplog.at_level(logging.WARNING, logger="gnn.train"):
        train(snap, tiny_cfg(epochs=5, eval_every=1, swa_start=5), tmp_path / "early", progress=False)
    assert "weight average began" not in caplog.text


def test_a_run_resumed_with_epochs_lowered_to_an_unevaluated_epoch_ends_as_a_whole_run_does(tmp_path: Path) -> None:
    """Stopped after epoch 3 (unevaluated, eval_every 2) and called again with epochs = 3: it
    published epoch 2's weights once an evaluation existed; a whole 3-epoch run evaluates epoch 3."""
    snap = planted_snapshot(num_users=40)
    for _ in range(3):  # one epoch a call
        train(snap, tiny_cfg(epochs=10, eval_every=2, deterministic=True), tmp_path / "cut", progress=False,
              max_time_s=0)
    short = tiny_cfg(epochs=3, eval_every=2, deterministic=True)
    cut = json.loads((train(snap, short, tmp_path / "cut", progress=False) / "metrics.json").read_text())
    whole = json.loads((train(snap, short, tmp_path / "whole", progress=False) / "metrics.json").read_text())
    assert cut["best_epoch"] == whole["best_epoch"] and "valid_ndcg@20" in cut["history"][-1]
    assert cut["test"]["ndcg@20"] == pytest.approx(whole["test"]["ndcg@20"], abs=1e-6)


def test_items_reach_their_entities_and_one_triple_further() -> None:
    """An artist same_as a Freebase entity reaches that entity's genre (one triple on, head to
    tail), so recommendations can be asked within it; an entity no item reaches is left out."""
    from gnn.train import item_attributes

    snap = planted_snapshot(num_users=10)
    snap.ids["entity"] = ["fb:artist0", "fb:rock", "fb:album", "genre:x", "fb:nothing"]
    snap.entity_types, snap.entity_names = ["kg"] * 5, list(snap.ids["entity"])
    snap.relations = {"same_as": np.array([[0], [0]]), "has:genre": np.array([[1, 2], [3, 3]]),
                      "kg:genre": np.array([[0], [1]]), "kg:album_of": np.array([[2], [0]])}
    snap.relation_types = {"same_as": ("item", "entity"), "has:genre": ("item", "entity"),
                           "kg:genre": ("entity", "entity"), "kg:album_of": ("entity", "entity")}
    indptr, indices, ids = item_attributes(snap)
    reached = {i: sorted(ids[j] for j in indices[indptr[i]:indptr[i + 1]]) for i in range(3)}
    assert reached == {0: ["fb:artist0", "fb:rock"], 1: ["genre:x"], 2: ["genre:x"]}
    assert "fb:nothing" not in ids and "fb:album" not in ids  # the album points at the artist, not back
    import gnn.train

    snap.relations["kg:style"] = np.array([[0], [1]])  # the same head and tail under a second relation
    snap.relation_types["kg:style"] = ("entity", "entity")
    saved = gnn.train.MAX_REACH_ENTRIES
    try:
        gnn.train.MAX_REACH_ENTRIES = 1  # the one (item, entity) pair it adds: counted once, not per relation
        assert "fb:rock" in item_attributes(snap)[2]
        gnn.train.MAX_REACH_ENTRIES = 0  # a KG whose hubs would blow it up
        indptr, indices, ids = item_attributes(snap)
    finally:
        gnn.train.MAX_REACH_ENTRIES = saved
    assert "fb:rock" not in ids and "fb:artist0" in ids  # the items' own links only


def test_reach_size_does_not_wrap_past_int32() -> None:
    """A hub entity that 65,536 items link to and that heads 65,536 triples reaches 2^32 pairs: the
    cap must see 2^32, not the 0 that scipy's int32 index arrays would wrap it to."""
    import scipy.sparse as sp
    from gnn.train import reach_size

    n = 65_536
    direct = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), np.zeros(n, int))), shape=(n, n + 1))
    triples = sp.csr_matrix((np.ones(n, np.float32), (np.zeros(n, int), np.arange(1, n + 1))), shape=(n + 1, n + 1))
    assert direct.indptr.dtype == np.int32  # the case that wrapped
    assert reach_size(direct, triples) == 2**32


def test_rgcn_graph_and_training_run(tmp_path: Path) -> None:
    from gnn.models.kgfused import KGFusedRec
    from gnn.models.rgcn import RGCNRec

    snap = planted_snapshot(num_users=80)
    # two genre entities: block A items -> genre 0, block B -> genre 1 (item -> entity relation)
    items = np.arange(2 * BLOCK)
    snap.ids["entity"] = ["g0", "g1"]
    snap.entity_types = ["genre", "genre"]
    snap.entity_names = ["g0", "g1"]
    snap.relations = {"has_genre": np.stack([items, items // BLOCK])}
    snap.relation_types = {"has_genre": ("item", "entity")}
    counts = {t: snap.num_nodes(t) for t in ("user", "item", "query", "entity")}
    ei, et = RGCNRec.build_graph(np.array([0, 1]), np.array([2, 3]), counts, snap.relations, snap.relation_types)
    assert et.tolist().count(0) == 2 and et.tolist().count(1) == 2 and et.tolist().count(2) == 2 * BLOCK
    assert ei[:, 0].tolist() == [0, 80 + 2]  # user 0 -> item 2 (items offset by 80 users)
    assert int(ei[1, et == 2].max()) == 80 + NUM_ITEMS + 1  # genre 1 after users and items
    empty = {**snap.relations, "friend": np.zeros(0, np.int64)}  # a relation with no edges, stored flat
    _, et2 = RGCNRec.build_graph(np.array([0, 1]), np.array([2, 3]), counts, empty,
                                 {**snap.relation_types, "friend": ("user", "user")})
    assert torch.equal(et2, torch.where(et >= 2, et + 2, et))  # "friend" sorts first: types 2, 3, with no edges
    past = {"has_genre": np.stack([items, items // BLOCK + 1])}  # genre 2 does not exist: it would be user 0
    for model_cls in (RGCNRec, KGFusedRec):
        with pytest.raises(ValueError, match="relation 'has_genre': entity index outside 0..1"):
            model_cls.build_graph(np.array([0, 1]), np.array([2, 3]), counts, past, snap.relation_types)
    model = RGCNRec(counts, RGCNRec.count_relations(snap.relations), embedding_dim=8, num_layers=2)
    ue, ie = model.get_embedding((ei, et))
    assert ue.shape == (80, 8) and ie.shape == (NUM_ITEMS, 8)
    assert "relations=4" in repr(model)
    with pytest.raises(ValueError):
        RGCNRec(counts, 4, num_bases=2, num_blocks=2)
    art = train(snap, tiny_cfg(model="rgcn", epochs=4, num_layers=1, lr=0.01), tmp_path, progress=False)
    m = json.loads((art / "metrics.json").read_text())["test"]
    assert m["recall@20"] > 0.3, m


def test_adjacency_extra_edges_join_both_directions_and_normalise() -> None:
    # u0-i0 interaction; friendship u1->u0 given twice (once reversed) and a self-loop, all collapsed
    adj = LightGCN.build_adjacency(np.array([0]), np.array([0]), 2, 1,
                                   extra_edges=np.array([[1, 0, 1], [0, 1, 1]])).to_dense()
    assert torch.allclose(adj, adj.t())
    # deg(u0) = 2 (i0, u1), deg(u1) = 1, deg(i0) = 1
    assert adj[0, 2].item() == pytest.approx(2 ** -0.5)
    assert adj[0, 1].item() == pytest.approx(2 ** -0.5)
    assert adj[1, 1].item() == 0.0 and int((adj != 0).sum()) == 4
    with pytest.raises(ValueError, match="outside"):
        LightGCN.build_adjacency(np.array([0]), np.array([0]), 2, 1, extra_edges=np.array([[0], [3]]))


def test_a_checkpoint_directory_removed_as_a_run_claims_it_is_made_again(tmp_path: Path, monkeypatch) -> None:
    """A sweep (kgrec retrain's) deleting the directory between a run's mkdir and its open of the owner
    file failed the run with FileNotFoundError."""
    import builtins

    import gnn.train as trainer

    ckpt = tmp_path / "lightgcn-0123456789ab"
    ckpt.mkdir()
    (ckpt / "last.pt").write_text("an old night's")
    armed = [True]

    def open_after_a_sweep(path, *args, **kwargs):
        if armed[0] and Path(path) == ckpt / "owner":
            armed[0] = False
            assert trainer.remove_checkpoint_dir(ckpt) and not ckpt.exists()
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(trainer, "open", open_after_a_sweep, raising=False)
    with trainer._claimed_checkpoint_dir(ckpt) as claimed:
        assert claimed == ckpt and (ckpt / "owner").read_text() == str(os.getpid())
        assert not (ckpt / "last.pt").exists()  # afresh: the sweep took the old checkpoint

    def not_mine(path):
        raise PermissionError(13, "Permission denied", str(path / "owner"))

    monkeypatch.setattr(trainer, "_lock_owner_file", not_mine)  # another user's: left, not a failed sweep
    assert trainer.remove_checkpoint_dir(ckpt) is False and ckpt.is_dir()


def test_each_run_claims_its_own_version_directory(tmp_path: Path) -> None:
    """Two artifacts of one model written in the same second never share a temporary directory."""
    from gnn.train import _claim_version

    (v1, t1), (v2, t2) = _claim_version(tmp_path, "lightgcn"), _claim_version(tmp_path, "lightgcn")
    assert v1 != v2 and t1.is_dir() and t2.is_dir() and t1 != t2
    (tmp_path / v1).mkdir()  # a published version is not reused either
    t1.rmdir()
    assert _claim_version(tmp_path, "lightgcn")[0] not in (v1, v2)


def test_a_run_killed_after_it_stopped_early_resumes_straight_to_the_same_artifact(tmp_path: Path) -> None:
    snap = planted_snapshot(num_users=60)
    cfg = tiny_cfg(epochs=30, patience=1, lr=0.05)
    whole = json.loads((train(snap, cfg, tmp_path / "whole", progress=False) / "metrics.json").read_text())
    stop = len(whole["history"])
    assert stop < cfg.epochs  # it did stop early

    def killed_at_the_stop(epoch: int, row: dict) -> None:  # the checkpoint already says "stop"
        if epoch == stop:
            raise Boom("killed before the artifact")

    with pytest.raises(Boom):
        train(snap, cfg, tmp_path / "cut", epoch_hook=killed_at_the_stop, progress=False)
    seen: list[int] = []
    resumed = json.loads((train(snap, cfg, tmp_path / "cut", epoch_hook=lambda e, r: seen.append(e),
                                progress=False) / "metrics.json").read_text())
    assert seen == []  # no epoch trained after the stop
    assert [r["epoch"] for r in resumed["history"]] == list(range(1, stop + 1))
    assert resumed["best_epoch"] == whole["best_epoch"] and resumed["test"] == whole["test"]


def test_the_checkpoint_follows_the_graph_of_the_models_that_use_it(tmp_path: Path) -> None:
    """Another KG (or friend edges) under the same training pairs is another run for rgcn/kgfused
    and for graph_relations; plain LightGCN trains on the pairs alone, so its checkpoint stays."""
    import dataclasses

    snap = planted_snapshot(num_users=60)
    tr = snap.splits["train"]
    csr = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    name = "friend"  # a user-user relation: usable by rgcn, kgfused and graph_relations alike
    snap.relations, snap.relation_types = {name: np.array([[0, 1], [1, 2]])}, {name: ("user", "user")}
    other = dataclasses.replace(snap, relations={name: np.array([[0, 1], [1, 3]])})
    from gnn.train import graph_relation_edges

    past = dataclasses.replace(snap, relations={name: np.array([[0], [snap.num_users]])})  # would be item 0
    with pytest.raises(ValueError, match="relation 'friend': user index outside"):
        graph_relation_edges(past, [name])
    for cfg in (tiny_cfg(model="rgcn"), tiny_cfg(graph_relations=[name])):
        assert checkpoint_dir(tmp_path, cfg, csr, snapshot=snap) != checkpoint_dir(tmp_path, cfg, csr, snapshot=other)
    # the same edges between other node types (user-user read as user-item) are another graph
    retyped = dataclasses.replace(snap, relation_types={name: ("user", "item")})
    assert checkpoint_dir(tmp_path, tiny_cfg(model="rgcn"), csr, snapshot=snap) != checkpoint_dir(
        tmp_path, tiny_cfg(model="rgcn"), csr, snapshot=retyped)
    plain = tiny_cfg()
    assert checkpoint_dir(tmp_path, plain, csr, snapshot=snap) == checkpoint_dir(tmp_path, plain, csr, snapshot=other)
    # the pairs early stopping evaluates on are part of the run: a resumed run compares its scores
    # with a best score measured on the same pairs
    swapped = dataclasses.replace(snap, splits={**snap.splits, "valid": snap.splits["test"], "test": snap.splits["valid"]})
    assert checkpoint_dir(tmp_path, plain, csr, snapshot=snap) != checkpoint_dir(tmp_path, plain, csr, snapshot=swapped)


def test_a_run_resumed_past_fewer_epochs_publishes_evaluated_weights(tmp_path: Path) -> None:
    """A checkpoint from before the first evaluation, resumed with ``epochs`` lowered to where it
    stopped: no epoch is left to run, and the last one is evaluated, as an uninterrupted run's is."""
    snap = planted_snapshot(num_users=40)
    train(snap, tiny_cfg(epochs=5, eval_every=5), tmp_path, progress=False, max_time_s=0)  # stops after epoch 1
    artifact = train(snap, tiny_cfg(epochs=1, eval_every=5), tmp_path, progress=False)
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["best_score"] == metrics["history"][-1]["valid_ndcg@20"] > 0
    assert (tmp_path / "current").resolve() == artifact.resolve()


def test_an_unreadable_checkpoint_starts_the_run_afresh(tmp_path: Path, caplog) -> None:
    """``last.pt`` cut short (written without fsync, then a power loss) must not block every later
    run of the same config."""
    snap = planted_snapshot(num_users=40)
    cfg = tiny_cfg(epochs=3, eval_every=1)
    tr = snap.splits["train"]
    ckpt = checkpoint_dir(tmp_path, cfg, to_csr(tr.user, tr.item, snap.num_users, snap.num_items), snapshot=snap)
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    artifact = train(snap, cfg, tmp_path, progress=False)
    assert "cannot be read" in caplog.text
    assert [r["epoch"] for r in json.loads((artifact / "metrics.json").read_text())["history"]] == [1, 2, 3]


def test_a_checkpoint_without_a_usable_sampler_state_resumes_from_the_seed(tmp_path: Path, caplog) -> None:
    """A checkpoint of a run on the other kind of device (a CPU generator's state does not fit a
    CUDA one) or from before the torch sampler: the run goes on, sampling from its seed."""
    snap = planted_snapshot(num_users=40)
    cfg = tiny_cfg(epochs=3, eval_every=1)
    train(snap, cfg, tmp_path, progress=False, max_time_s=0)  # stops after epoch 1, checkpoint kept
    tr = snap.splits["train"]
    last = checkpoint_dir(tmp_path, cfg, to_csr(tr.user, tr.item, snap.num_users, snap.num_items), snapshot=snap) / "last.pt"
    state = torch.load(last, weights_only=False)
    state["sampler_rng"] = torch.zeros(3, dtype=torch.uint8)  # not a generator state here
    torch.save(state, last)
    artifact = train(snap, cfg, tmp_path, progress=False)
    assert "no sampler state for cpu (RuntimeError)" in caplog.text
    assert [r["epoch"] for r in json.loads((artifact / "metrics.json").read_text())["history"]] == [1, 2, 3]


def test_a_bad_cut_off_is_refused_before_training(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("gnn.train.build_model", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(ValueError, match="ks must be cut-offs >= 1"):
        train(planted_snapshot(num_users=40), tiny_cfg(ks=[0, 20]), tmp_path, progress=False)
    # a graph filter checked its cut-offs after its SVD, and a sampling strategy was checked after the graph
    monkeypatch.setattr("gnn.train.build_filter", lambda *a, **k: pytest.fail("fitted a filter"))
    with pytest.raises(ValueError, match="ks must be cut-offs >= 1"):
        train(planted_snapshot(num_users=40), tiny_cfg(model="gfcf", ks=[0]), tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown negative_sampling 'hardest'"):
        train(planted_snapshot(num_users=40), tiny_cfg(negative_sampling="hardest"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown negative_sampling"):  # before the snapshot is read
        train_model(tmp_path / "no-such-snapshot", Config(train=tiny_cfg(negative_sampling="hardest")))
    for bad, said in (({"sampler": "neighbor"}, "implemented for model 'rgcn' only"),  # refused after the graph
                      ({"sampler": "neighbour"}, "unknown sampler 'neighbour'"),
                      ({"model": "rgcn", "sampler": "neighbor", "num_neighbors": [5, 5, 5]}, "3 hops but the model has 2"),
                      ({"model": "rgcn", "sampler": "neighbor", "num_neighbors": [10, 0]}, "positive fan-outs or -1")):
        with pytest.raises(ValueError, match=said):
            train(planted_snapshot(num_users=40), tiny_cfg(**bad), tmp_path, progress=False)
    for fan_out in ([0], [10, 0], [-2, 5]):  # refused with the config, not after the export and the graph
        with pytest.raises(ValueError, match="must be positive fan-outs or -1"):
            train_model(tmp_path / "no-such-snapshot", Config(train=tiny_cfg(model="rgcn", sampler="neighbor",
                                                                             num_neighbors=fan_out)))
    if not torch.cuda.is_available():  # torch's RuntimeError about a missing driver, with a traceback
        with pytest.raises(ValueError, match="train device 'cuda:0': CUDA has no device\\(s\\) here"):
            train_model(tmp_path / "no-such-snapshot", Config(train=tiny_cfg(device="cuda:0")))
    with pytest.raises(ValueError, match="does not run on MPS"):  # float64 sampling: it failed mid-set-up there
        train_model(tmp_path / "no-such-snapshot", Config(train=tiny_cfg(device="mps")))
    # a zero-dimension model was trained and published (every score 0); lr 0 trained nothing
    for bad, said in (({"embedding_dim": 0}, "embedding_dim must be >= 1"),
                      ({"model": "kgfused", "embedding_dim": -4}, "embedding_dim must be >= 1"),
                      ({"num_layers": -1}, "num_layers"), ({"swa_start": -1}, "swa_start"),
                      ({"lr": 0.0}, "lr must be > 0"), ({"lr": float("nan")}, "lr must be > 0"),
                      ({"weight_decay": -1e-4}, "weight_decay >= 0"),
                      ({"model": "fused", "fusion": "gated"}, "unknown fusion 'gated'")):  # after the text vectors
        with pytest.raises(ValueError, match=said):
            train(planted_snapshot(num_users=40), tiny_cfg(**bad), tmp_path, progress=False)


def test_settings_the_model_does_not_read_are_named_in_a_warning(tmp_path: Path, caplog) -> None:
    """A config's fusion, filter or kg_* settings were ignored without a word by a model that has none."""
    caplog.set_level("WARNING", logger="gnn.train")
    # even a fusion no text model takes: a config shared between models is not refused for it
    cfg = tiny_cfg(fusion="gated", filter={"k": 8}, kg_users=True, kg_bases=2, epochs=1)
    train(planted_snapshot(num_users=40), cfg, tmp_path / "lightgcn", progress=False)
    assert ("model 'lightgcn' does not use [train] fusion = 'gated', filter = {'k': 8}, kg_bases = 2, kg_users = true; "
            "they are ignored") in caplog.text
    caplog.clear()
    train(planted_snapshot(num_users=40), tiny_cfg(model="gfcf", filter={"k": 8}), tmp_path / "gfcf", progress=False)
    train(planted_snapshot(num_users=40), tiny_cfg(epochs=1), tmp_path / "plain", progress=False)
    assert "does not use" not in caplog.text
