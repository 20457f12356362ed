"""The text fusion module, the text-only option and KGFusedRec (fused text + LightGCN + R-GCN)."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn.models.fusion import FUSIONS, TextFusion
from gnn.models.kgfused import KGFusedRec
from gnn.train import MODELS, train
from kg.export import split_interactions
from kg.snapshot import Interactions, Snapshot
from kg.synthetic import SyntheticSpec, community_of_item, generate
from kgrec.config import DEFAULT_ID_WEIGHT_DECAY, ExportConfig, TrainConfig

SPEC = SyntheticSpec(num_users=240, num_items=160, num_communities=4, interactions_per_user=14, num_queries=24,
                     seed=3)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the text encoder: word counts over the texts' vocabulary."""
    tokens = [re.findall(r"[a-z]+", t.lower()) for t in texts]
    vocab = {w: k for k, w in enumerate(sorted({w for ts in tokens for w in ts}))}
    out = np.zeros((len(texts), max(1, len(vocab))), dtype=np.float32)
    for row, ts in enumerate(tokens):
        for w in ts:
            out[row, vocab[w]] += 1
    return out


def synthetic_snapshot(spec: SyntheticSpec = SPEC) -> tuple[Snapshot, dict[str, np.ndarray]]:
    """kg.synthetic rows turned into a Snapshot in memory (what export would write, without Neo4j),
    plus bag-of-words text vectors for items (title, description, attribute names), queries and entities."""
    rec = generate(spec)
    ids = {"user": [u["id"] for u in rec.users], "item": [i["id"] for i in rec.items],
           "query": [q["id"] for q in rec.queries], "entity": [e["id"] for e in rec.entities]}
    index = {t: {v: k for k, v in enumerate(vs)} for t, vs in ids.items()}
    u = np.array([index["user"][r["user"]] for r in rec.interactions], dtype=np.int64)
    i = np.array([index["item"][r["item"]] for r in rec.interactions], dtype=np.int64)
    ts = np.array([r["ts"] for r in rec.interactions], dtype=np.int64)
    codes = split_interactions(u, i, ts, ExportConfig(split="ratio", valid_ratio=0.1, test_ratio=0.2, seed=1))
    splits = {name: Interactions(u[codes == c], i[codes == c], np.ones(int((codes == c).sum()), np.float32),
                                 ts[codes == c], np.zeros(int((codes == c).sum()), np.int16))
              for c, name in enumerate(("train", "valid", "test"))}
    relations: dict[str, list[tuple[int, int]]] = {}
    relation_types: dict[str, tuple[str, str]] = {}
    for r in rec.item_entities:
        name = f"has:{r['relation']}"
        relations.setdefault(name, []).append((index["item"][r["item"]], index["entity"][r["entity"]]))
        relation_types[name] = ("item", "entity")
    relations["relevant"] = [(index["query"][r["query"]], index["item"][r["item"]]) for r in rec.query_items]
    relations["searched"] = [(index["user"][r["user"]], index["query"][r["query"]]) for r in rec.user_queries]
    relation_types.update({"relevant": ("query", "item"), "searched": ("user", "query")})
    snap = Snapshot(ids=ids, entity_types=[e["type"] for e in rec.entities],
                    item_titles=[x["title"] for x in rec.items], item_descriptions=[x["description"] for x in rec.items],
                    query_texts=[q["text"] for q in rec.queries], entity_names=[e["name"] for e in rec.entities],
                    splits=splits, relations={k: np.asarray(v, dtype=np.int64).T for k, v in relations.items()},
                    relation_types=relation_types, meta={"name": "synthetic"})
    attrs = snap.item_attribute_names()
    item_texts = [f"{t}. {d} {' '.join(a)}" for t, d, a in zip(snap.item_titles, snap.item_descriptions, attrs)]
    vectors = bag_of_words(item_texts + snap.query_texts + snap.entity_names)
    n_i, n_q = snap.num_items, snap.num_nodes("query")
    text = {"item": vectors[:n_i], "query": vectors[n_i:n_i + n_q], "entity": vectors[n_i + n_q:]}
    return snap, text


def item_communities(snap: Snapshot, spec: SyntheticSpec = SPEC) -> np.ndarray:
    return np.array([community_of_item(i, spec) for i in snap.ids["item"]])


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(embedding_dim=16, num_layers=2, kg_layers=1, lr=0.02, weight_decay=1e-4, batch_size=512, epochs=12,
                patience=4, ks=[10, 20], seed=7, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


COUNTS = {"user": 4, "item": 5, "query": 2, "entity": 3}
RELATIONS = {"has:genre": np.array([[0, 1, 2, 4], [0, 0, 1, 2]]), "relevant": np.array([[0, 1], [3, 4]]),
             "friend": np.array([[0], [1]])}
RELATION_TYPES = {"has:genre": ("item", "entity"), "relevant": ("query", "item"), "friend": ("user", "user")}


def tiny_graph():
    return KGFusedRec.build_graph(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]), COUNTS, RELATIONS, RELATION_TYPES)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_text_fusion_modes(fusion: str) -> None:
    f = TextFusion(10, 4, fusion)
    ids, text = torch.randn(3, 4), torch.randn(3, 10)
    out = f(ids, text)
    assert out.shape == (3, 4)
    if fusion == "sum":
        assert torch.allclose(out, ids + f.proj(text))
    if fusion == "text":
        assert not f.uses_ids and torch.allclose(f(None, text), f.proj(text))
    else:
        with pytest.raises(ValueError):
            f(None, text)
    with pytest.raises(ValueError):
        TextFusion(10, 4, "nope")


def test_build_graph_types_and_offsets() -> None:
    g = tiny_graph()
    # relations sorted by name: friend (0/1), has:genre (2/3), relevant (4/5); offsets user 0, item 4, query 9, entity 11
    assert g.edge_index.shape == (2, 14)
    fwd = g.edge_type == 2
    assert g.edge_index[0, fwd].tolist() == [4, 5, 6, 8] and g.edge_index[1, fwd].tolist() == [11, 11, 12, 13]
    rev = g.edge_type == 3
    assert g.edge_index[0, rev].tolist() == [11, 11, 12, 13]
    assert g.edge_index[:, g.edge_type == 4].tolist() == [[9, 10], [7, 8]]
    assert g.edge_index[:, g.edge_type == 0].tolist() == [[0], [1]]
    assert g.adj.shape == (9, 9)
    assert KGFusedRec.count_relations(RELATIONS) == 6


@pytest.mark.parametrize("fusion", ["sum", "gate", "text"])
@pytest.mark.parametrize("kg_layers", [0, 1, 2])
def test_kgfused_shapes_and_gradients(fusion: str, kg_layers: int) -> None:
    g = tiny_graph()
    text = {"item": torch.randn(5, 7), "entity": torch.randn(3, 7)}
    m = KGFusedRec(COUNTS, 6, text, embedding_dim=8, num_layers=2, kg_layers=kg_layers, fusion=fusion)
    with torch.no_grad():
        m.kg_gate.fill_(0.5)  # as after some training (they start at 0)
    ue, ie = m.get_embedding(g)
    assert ue.shape == (4, 8) and ie.shape == (5, 8)
    assert m(g, torch.tensor([0, 1]), torch.tensor([2, 3])).shape == (2,)
    assert m.recommend(g, torch.tensor([0, 1, 2]), k=3).shape == (3, 3)
    loss = m.loss(g, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([4, 4]))
    loss.backward()
    assert m.fuse["item"].proj.weight.grad.abs().sum() > 0
    assert ("item" in m.embedding) == (fusion != "text")  # text-only: no item id embeddings
    assert "query" in m.embedding and "user" in m.embedding  # no query text given -> ids
    if kg_layers:
        assert m.convs[0].weight.grad.abs().sum() > 0 and m.kg_gate.grad.abs().sum() > 0
        # entity text reaches the item embeddings only through the KG branch
        assert m.fuse["entity"].proj.weight.grad.abs().sum() > 0
    assert f"kg_layers={kg_layers}" in repr(m) and f"fusion={fusion}" in repr(m)


def test_kg_branch_changes_items_with_entity_edges_only() -> None:
    """Perturbing an entity's text moves exactly the items linked to it (one R-GCN layer, no LightGCN layers)."""
    torch.manual_seed(0)
    text = {"item": torch.randn(5, 7), "entity": torch.randn(3, 7)}
    m = KGFusedRec(COUNTS, 6, text, embedding_dim=8, num_layers=0, kg_layers=1, kg_users=True)
    g = tiny_graph()
    assert torch.equal(m.get_embedding(g)[1], m.type_ego("item"))  # gates start at 0: the KG adds nothing yet
    with torch.no_grad():
        m.kg_gate.fill_(1.0)
    before = m.get_embedding(g)[1].detach()
    m.text_entity[2] += 1.0  # entity 2 is linked to item 4 only
    after = m.get_embedding(g)[1].detach()
    moved = (after - before).abs().sum(1) > 1e-6
    assert moved.tolist() == [False, False, False, False, True]
    # no self-loop weight: a node without KG edges (users 2, 3) keeps exactly its LightGCN output
    ue = m.get_embedding(g)[0].detach()
    assert torch.allclose(ue[2:], m.type_ego("user")[2:].detach())
    assert not torch.allclose(ue[:2], m.type_ego("user")[:2].detach())  # friends u0 <-> u1


def test_items_only_kg_leaves_users_with_their_lightgcn_output() -> None:
    """kg_users=False: the friend edge u0 <-> u1 no longer changes users, items still get the KG term."""
    torch.manual_seed(0)
    text = {"item": torch.randn(5, 7), "entity": torch.randn(3, 7)}
    m = KGFusedRec(COUNTS, 6, text, embedding_dim=8, num_layers=0, kg_layers=1, kg_users=False)
    with torch.no_grad():
        m.kg_gate.fill_(1.0)
    ue, ie = m.get_embedding(tiny_graph())
    assert torch.equal(ue, m.type_ego("user"))
    assert not torch.allclose(ie[:3], m.type_ego("item")[:3])  # items 0-2 are linked to entities
    assert "kg_users" not in m.state_dict() and "kg_gate_mask" not in m.state_dict()


def test_kgfused_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        KGFusedRec({"user": 0, "item": 3}, 2)
    with pytest.raises(ValueError):
        KGFusedRec(COUNTS, 6, None, fusion="text")
    with pytest.raises(ValueError):
        KGFusedRec(COUNTS, 6, {"item": np.zeros((4, 3))})
    with pytest.raises(ValueError):
        KGFusedRec(COUNTS, 6, kg_layers=-1)


def test_kgfused_trains_on_planted_communities(tmp_path: Path) -> None:
    assert "kgfused" in MODELS
    snap, text = synthetic_snapshot()
    art = train(snap, tiny_cfg(model="kgfused"), tmp_path, text_embeddings=text, progress=False)
    # id_weight_decay unset: the artifact records the value it trained with (off for kgfused)
    assert json.loads((art / "config.json").read_text())["id_weight_decay"] == 0.0
    metrics = json.loads((art / "metrics.json").read_text())
    m = metrics["test"]
    random_recall = 20 / SPEC.num_items
    assert m["recall@20"] > 3 * random_recall, m
    # items of one community end up closer to each other than to other communities
    with np.load(art / "embeddings.npz") as z:
        ie = z["item"]
    comm = item_communities(snap)
    e = ie / np.linalg.norm(ie, axis=1, keepdims=True)
    sim = e @ e.T
    same = sim[comm[:, None] == comm[None, :]].mean()
    other = sim[comm[:, None] != comm[None, :]].mean()
    assert same > other + 0.2, (same, other)


def test_text_only_fused_trains_without_item_ids(tmp_path: Path) -> None:
    snap, text = synthetic_snapshot()
    art = train(snap, tiny_cfg(model="fused", fusion="text"), tmp_path, text_embeddings=text["item"], progress=False)
    m = json.loads((art / "metrics.json").read_text())["test"]
    assert m["recall@20"] > 3 * 20 / SPEC.num_items, m
    from gnn.models.fused import FusedLightGCN
    model = FusedLightGCN(snap.num_users, snap.num_items, text["item"], embedding_dim=8, fusion="text")
    assert model.embedding.weight.shape == (snap.num_users, 8)


@pytest.mark.parametrize("num_bases", [None, 2])
def test_relational_conv_equals_pyg_rgcnconv(num_bases: int | None) -> None:
    from torch_geometric.nn import RGCNConv

    from gnn.models.relconv import RelationalConv, sort_by_type

    torch.manual_seed(0)
    n, d, r = 12, 5, 4
    edge_index = torch.randint(0, n, (2, 40))
    edge_type = torch.randint(0, r, (40,))
    edge_type[edge_type == 3] = 2  # relation 3 has no edges
    x = torch.randn(n, d)
    ours = RelationalConv(d, 3, r, num_bases)
    ref = RGCNConv(d, 3, r, num_bases=num_bases, root_weight=False, bias=False, aggr="mean")
    with torch.no_grad():
        if num_bases:
            ref.weight.copy_(ours.basis)
            ref.comp.copy_(ours.comp)
        else:
            ref.weight.copy_(ours.weight)
    ei, _, ptr, norm = sort_by_type(edge_index, edge_type, r)
    assert ptr.tolist()[-1] == 40 and ptr[4] == ptr[3]
    assert torch.allclose(ours(x, ei, ptr, norm), ref(x, edge_index, edge_type), atol=1e-5)
    ei3, _, ptr3, norm3 = sort_by_type(edge_index, edge_type.clamp(max=2), 3)  # a graph of 3 types, not 4
    with pytest.raises(ValueError, match="3 relation types, the layer 4"):
        ours(x, ei3, ptr3, norm3)


@pytest.mark.parametrize("model", MODELS)
def test_models_step_under_bf16_autocast(model: str) -> None:
    """A training step under bf16 autocast (what ``train`` runs on CUDA with ``amp``) gives a finite
    float32 loss and float32 gradients, and leaves LightGCN's propagation in float32: CPU autocast
    casts the same matmul-like ops as CUDA's, so dtype mix-ups show up here before a GPU run."""
    from gnn.train import _build_graph, build_model

    snap, text = synthetic_snapshot()
    texts = {"fused": text["item"], "kgfused": text}.get(model)
    torch.manual_seed(0)
    net = build_model(tiny_cfg(model=model), snap, texts)
    tr = snap.splits["train"]
    graph = _build_graph(net, snap, tr.user, tr.item, torch.device("cpu"))
    batch = [torch.from_numpy(a[:64].astype(np.int64)) for a in (tr.user, tr.item, tr.item[::-1].copy())]
    reference = net.loss(graph, *batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net.loss(graph, *batch)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(loss.item() - reference.item()) < 0.05 * reference.item()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    if model == "lightgcn":  # nothing in LightGCN's loss is autocast to bf16: the same loss exactly
        assert loss.item() == reference.item()


def with_friends(snap: Snapshot, spec: SyntheticSpec, cold_users: np.ndarray, per_user: int = 4) -> Snapshot:
    """``snap`` plus a FRIEND relation: every user befriends ``per_user`` users of its planted community,
    and ``cold_users`` lose their training interactions (only their friends say who they are)."""
    from kg.synthetic import community_of_user
    rng = np.random.default_rng(0)
    comm = np.array([community_of_user(u, spec) for u in snap.ids["user"]])
    src, dst = [], []
    for u in range(snap.num_users):
        peers = np.flatnonzero((comm == comm[u]) & ~np.isin(np.arange(snap.num_users), cold_users))
        peers = peers[peers != u]
        for v in rng.choice(peers, per_user, replace=False):
            src.append(u)
            dst.append(v)
    tr = snap.splits["train"]
    return replace(snap, splits={**snap.splits, "train": tr.take(~np.isin(tr.user, cold_users))},
                   relations={**snap.relations, "FRIEND": np.array([src, dst], dtype=np.int64)},
                   relation_types={**snap.relation_types, "FRIEND": ("user", "user")})


@pytest.mark.parametrize("model", ["lightgcn", "kgfused"])
def test_graph_relations_reach_users_without_interactions_through_friends(tmp_path: Path, model: str) -> None:
    from kg.synthetic import community_of_user
    snap, text = synthetic_snapshot()
    cold = np.arange(0, snap.num_users, 12)  # 20 users with no training interaction
    snap = with_friends(snap, SPEC, cold)
    comm = item_communities(snap)
    text_arg = text if model == "kgfused" else None

    def own_share(graph_relations: list[str]) -> float:
        art = train(snap, tiny_cfg(model=model, graph_relations=graph_relations, epochs=15, patience=15),
                    tmp_path / "-".join([model, *graph_relations]), text_embeddings=text_arg, progress=False)
        with np.load(art / "embeddings.npz") as z:
            ue, ie = z["user"], z["item"]
        top = np.argsort(-(ue[cold] @ ie.T), axis=1)[:, :10]
        own = np.array([community_of_user(snap.ids["user"][u], SPEC) for u in cold])
        return float((comm[top] == own[:, None]).mean())

    with_graph, without = own_share(["FRIEND"]), own_share([])
    # 4 communities: chance is 0.25; friends' embeddings carry the community to the cold users
    assert with_graph > 0.8, with_graph
    assert without < 0.5, without


def test_graph_relations_are_checked() -> None:
    from gnn.train import graph_relation_edges
    snap, _ = synthetic_snapshot()
    assert graph_relation_edges(snap, []) is None
    with pytest.raises(ValueError, match="not in the snapshot"):
        graph_relation_edges(snap, ["FRIEND"])
    with pytest.raises(ValueError, match="only user/item relations"):
        graph_relation_edges(snap, ["relevant"])
    snap = with_friends(snap, SPEC, np.array([], dtype=np.int64))
    e = graph_relation_edges(snap, ["FRIEND"])
    assert e.shape == (2, 4 * snap.num_users) and e.max() < snap.num_users


def _text_model(kind: str, fusion: str = "sum") -> tuple[torch.nn.Module, object, torch.Tensor | None]:
    """A FusedLightGCN or KGFusedRec on 4 users and 5 items: the model, the graph its loss takes, its item ids."""
    from gnn.models.fused import FusedLightGCN
    from gnn.models.lightgcn import LightGCN

    torch.manual_seed(0)
    text = torch.randn(COUNTS["item"], 6)
    if kind == "kgfused":
        model = KGFusedRec(COUNTS, 6, {"item": text}, embedding_dim=8, num_layers=2, kg_layers=1, fusion=fusion)
        return model, tiny_graph(), model.embedding["item"].weight if "item" in model.embedding else None
    model = FusedLightGCN(COUNTS["user"], COUNTS["item"], text, embedding_dim=8, num_layers=2, fusion=fusion)
    adj = LightGCN.build_adjacency(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]), COUNTS["user"], COUNTS["item"])
    return model, adj, model.embedding.weight[COUNTS["user"]:] if model.fuse.uses_ids else None


@pytest.mark.parametrize("kind", ["fused", "kgfused"])
def test_id_weight_decay_adds_the_hand_computed_penalty_on_the_batch_item_ids_only(kind: str) -> None:
    model, graph, ids = _text_model(kind)
    user, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 4]), torch.tensor([2, 0, 3])
    mu = 0.5

    def grads(id_reg_weight: float) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss = model.loss(graph, user, pos, neg, reg_weight=1e-3, id_reg_weight=id_reg_weight)
        loss.backward()
        return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    base, g0 = grads(0.0)
    with_ids, g1 = grads(mu)
    e = ids.detach()
    # mu / (2B) * (sum over positives and negatives of ||e_i||^2), B = 3; item 0 is both a positive and a negative
    by_hand = mu / 6 * sum(float(e[i].pow(2).sum()) for i in (0, 1, 4, 2, 0, 3))
    assert with_ids - base == pytest.approx(by_hand, rel=1e-5)
    # its gradient is mu / B * (times the item is in the batch) * e_i on each item id row, and nothing else
    times = torch.tensor([2.0, 1, 1, 1, 1]).unsqueeze(1)
    id_name = "embedding.weight" if kind == "fused" else "embedding.item.weight"
    for name, g in g1.items():
        extra = g - g0[name]
        if name == id_name:
            if kind == "fused":  # the users' rows come first and get nothing
                users = extra[:COUNTS["user"]]
                assert torch.allclose(users, torch.zeros_like(users), atol=1e-7)
                extra = extra[COUNTS["user"]:]
            assert torch.allclose(extra, mu / 3 * times * e, atol=1e-6), name
        else:
            assert torch.allclose(extra, torch.zeros_like(extra), atol=1e-7), name


@pytest.mark.parametrize("kind", ["fused", "kgfused"])
def test_id_weight_decay_needs_item_ids(kind: str) -> None:
    model, graph, ids = _text_model(kind, "text")
    assert ids is None
    user, pos, neg = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])
    model.loss(graph, user, pos, neg, id_reg_weight=0.0)  # off is fine without ids
    with pytest.raises(ValueError, match="item id"):
        model.loss(graph, user, pos, neg, id_reg_weight=0.1)


def test_train_checks_id_weight_decay_and_keeps_it_in_the_checkpoint_fingerprint(tmp_path: Path) -> None:
    from gnn.evaluate import to_csr
    from gnn.train import checkpoint_dir, effective_id_weight_decay, loss_weights

    snap, text = synthetic_snapshot()
    for bad in (tiny_cfg(model="lightgcn", id_weight_decay=0.1), tiny_cfg(model="fused", fusion="text", id_weight_decay=0.1),
                tiny_cfg(model="fused", id_weight_decay=-1.0), tiny_cfg(model="gfcf", id_weight_decay=0.1),
                tiny_cfg(model="fused", id_weight_decay=float("nan")), tiny_cfg(model="fused", id_weight_decay=float("inf"))):
        with pytest.raises(ValueError, match="id_weight_decay"):
            train(snap, bad, tmp_path, text_embeddings=text["item"], progress=False)
    assert loss_weights(tiny_cfg(model="kgfused", id_weight_decay=0.1)) == {"reg_weight": 1e-4, "id_reg_weight": 0.1}
    assert loss_weights(tiny_cfg(model="fused", id_weight_decay=0.0)) == {"reg_weight": 1e-4}
    # unset: fused's default with item ids beside text, off for the others (kgfused included)
    assert DEFAULT_ID_WEIGHT_DECAY["fused"] > 0
    assert effective_id_weight_decay(tiny_cfg(model="fused")) == DEFAULT_ID_WEIGHT_DECAY["fused"]
    for cfg in (tiny_cfg(model="fused", fusion="text"), tiny_cfg(model="kgfused"), tiny_cfg(model="lightgcn")):
        assert effective_id_weight_decay(cfg) == 0.0
    assert loss_weights(tiny_cfg(model="lightgcn")) == {"reg_weight": 1e-4}
    tr = snap.splits["train"]
    csr = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    off, on, unset = (checkpoint_dir(tmp_path, tiny_cfg(model="fused", id_weight_decay=w), csr, text["item"],
                                     snapshot=snap)
                      for w in (0.0, 0.1, None))
    assert off != on  # a run with another id_weight_decay never resumes this one's checkpoint
    assert unset == checkpoint_dir(tmp_path, tiny_cfg(model="fused", id_weight_decay=DEFAULT_ID_WEIGHT_DECAY["fused"]),
                                   csr, text["item"], snapshot=snap)
    # lightgcn leaves the field out of its fingerprint, set to 0 or not
    lightgcn = [checkpoint_dir(tmp_path, tiny_cfg(model="lightgcn", id_weight_decay=w), csr, snapshot=snap)
                for w in (0.0, None)]
    assert lightgcn[0] == lightgcn[1]


def test_a_large_id_weight_decay_shrinks_the_item_ids_and_still_learns_the_communities(tmp_path: Path) -> None:
    from gnn.evaluate import to_csr
    from gnn.train import checkpoint_dir

    snap, text = synthetic_snapshot()
    tr = snap.splits["train"]
    csr = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    norms = {}
    for mu in (0.0, 1.0):
        cfg = tiny_cfg(model="fused", id_weight_decay=mu, epochs=8)
        out = tmp_path / f"mu{mu}"
        last = checkpoint_dir(out, cfg, csr, text["item"], snapshot=snap) / "last.pt"

        def item_id_norm(epoch: int, row: dict, last: Path = last, mu: float = mu) -> None:
            ids = torch.load(last, weights_only=False)["model"]["embedding.weight"][snap.num_users:]
            norms[mu] = float(ids.norm(dim=1).mean())

        art = train(snap, cfg, out, text_embeddings=text["item"], progress=False, epoch_hook=item_id_norm)
        m = json.loads((art / "metrics.json").read_text())["test"]
        assert m["recall@20"] > 3 * 20 / SPEC.num_items, (mu, m)
    assert norms[1.0] < 0.5 * norms[0.0], norms
