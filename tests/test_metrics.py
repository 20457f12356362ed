"""Every metric against numbers computed by hand on tiny cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gnn import metrics as M
from gnn.evaluate import evaluate, to_csr

# log2 discounts used below: 1/log2(2) = 1, 1/log2(3) = 0.6309297536, 1/log2(4) = 0.5,
# 1/log2(5) = 0.4306765581.


def test_recall_precision_hit_mrr_by_hand() -> None:
    hits = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=torch.bool)
    n_truth = torch.tensor([4, 2, 1])
    assert M.recall(hits, n_truth).tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert M.precision(hits).tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert M.precision(hits, 5).tolist() == pytest.approx([2 / 5, 0.0, 1 / 5])  # K = 5 over 3 items
    assert M.hit_rate(hits).tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert M.mrr(hits).tolist() == pytest.approx([1.0, 0.0, 0.5])


def test_ndcg_lightgcn_definition() -> None:
    # user 0: hits at ranks 1,3 of K=3, |T|=4 -> IDCG over min(4,3)=3 positions
    #   DCG = 1 + 0.5 = 1.5; IDCG = 1 + 0.6309297536 + 0.5 = 2.1309297536 -> 0.7039180890
    # user 1: hit at rank 2, |T|=1 -> DCG = 0.6309297536, IDCG = 1 -> 0.6309297536
    # user 2: |T|=5 > K, both hits -> 1.0 ; user 3: no truth -> 0
    hits = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    n_truth = torch.tensor([4, 1, 5, 0])
    assert M.ndcg(hits, n_truth).tolist() == pytest.approx([0.7039180890, 0.6309297536, 1.0, 0.0])


def test_coverage_popularity_diversity_by_hand() -> None:
    top = torch.tensor([[0, 1], [0, 2]])
    assert M.coverage(top, 6) == pytest.approx(0.5)  # {0,1,2} of 6
    pop = torch.tensor([10.0, 2.0, 4.0, 0.0])
    assert M.average_popularity(top, pop).tolist() == pytest.approx([6.0, 7.0])
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    # [0,1] orthogonal -> 1 ; [0,2] parallel -> 0
    assert M.intra_list_diversity(top, emb).tolist() == pytest.approx([1.0, 0.0])
    # [0,1,3]: cos = 0, 0.7071067812, 0.7071067812 -> 1 - 1.4142135624/3 = 0.5285954792
    assert M.intra_list_diversity(torch.tensor([[0, 1, 3]]), emb).tolist() == pytest.approx([0.5285954792])
    # positions holding no recommendation (listed False) are left out: [0,1] of [0,1,3] -> 1; one item -> 0
    listed = torch.tensor([[True, True, False], [True, False, False]])
    three = torch.tensor([[0, 1, 3], [2, 0, 1]])
    assert M.intra_list_diversity(three, emb, listed).tolist() == pytest.approx([1.0, 0.0])
    assert M.average_popularity(three, pop, listed).tolist() == pytest.approx([6.0, 4.0])


def _toy():
    # 3 users, 5 items. user 0: train {0}, truth {1, 3}; user 1: train {4}, truth {0};
    # user 2: train {2}, no truth (not evaluated).
    train = to_csr(np.array([0, 1, 2]), np.array([0, 4, 2]), 3, 5)
    truth = to_csr(np.array([0, 0, 1]), np.array([1, 3, 0]), 3, 5)
    table = torch.tensor([[10.0, 9, 8, 7, 6], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    return train, truth, (lambda u: table[u])


def test_evaluate_full_ranking_by_hand() -> None:
    train, truth, score_fn = _toy()
    out = evaluate(score_fn, train, truth, ks=[2, 4], num_items=5, batch_size=1)
    # user 0 ranking (item 0 masked): 1,2,3,4 ; user 1 ranking (item 4 masked): 3,2,1,0
    # K=2: u0 hits [1,0] recall .5 ndcg 1/1.6309297536=.6131471928 ; u1 hits [0,0]
    # K=4: u0 hits [1,0,1,0] recall 1 ndcg 1.5/1.6309297536=.9197207891 ; u1 [0,0,0,1] ndcg .4306765581
    expected = {
        "num_users": 2.0,
        "recall@2": 0.25, "ndcg@2": 0.3065735964, "precision@2": 0.25, "hit@2": 0.5, "mrr@2": 0.5,
        "recall@4": 1.0, "ndcg@4": 0.6751986736, "precision@4": 0.375, "hit@4": 1.0, "mrr@4": 0.625,
        "coverage@2": 0.6, "coverage@4": 1.0,  # K=2 lists {1,2} and {3,2}
        # train counts [1,0,1,0,1]: K=2 lists [1,2],[3,2] -> .5,.5 ; K=4 [1,2,3,4],[3,2,1,0] -> .5,.5
        "avg_pop@2": 0.5, "avg_pop@4": 0.5,
    }
    assert out == pytest.approx(expected)


def test_evaluate_extra_exclusion_and_csr_tuple() -> None:
    train, truth, score_fn = _toy()
    excl = to_csr(np.array([0]), np.array([1]), 3, 5)  # user 0's item 1 is a "valid" positive
    truth2 = to_csr(np.array([0]), np.array([3]), 3, 5)
    out = evaluate(score_fn, (train.indptr, train.indices), truth2, ks=[2], num_items=5, exclude=excl)
    # user 0 ranking: 2,3,4 -> hits [0,1], |T|=1: recall 1, ndcg 0.6309297536, mrr .5, precision .5
    assert out["recall@2"] == pytest.approx(1.0)
    assert out["ndcg@2"] == pytest.approx(0.6309297536)
    assert out["mrr@2"] == pytest.approx(0.5)
    assert out["precision@2"] == pytest.approx(0.5)
    assert out["num_users"] == 1.0


def test_evaluate_diversity_and_errors() -> None:
    train, truth, score_fn = _toy()
    emb = torch.tensor([[1.0, 0], [0, 1], [0, 1], [1, 0], [1, 0]])
    out = evaluate(score_fn, train, truth, ks=[2], num_items=5, item_embeddings=emb)
    # u0 top [1,2] parallel -> 0 ; u1 top [3,2] orthogonal -> 1
    assert out["ild@2"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        evaluate(score_fn, train, truth, ks=[], num_items=5)
    with pytest.raises(ValueError):
        evaluate(lambda u: torch.zeros(len(u), 3), train, truth, ks=[2], num_items=5)


def test_evaluate_masked_items_filling_the_list_are_not_hits() -> None:
    """K at the catalogue size: the masked training item fills the last slot; it is neither a hit
    (though it is a truth item, a repeat) nor covered, and a repeated cut-off counts once."""
    train, _, score_fn = _toy()
    truth = to_csr(np.array([0, 0]), np.array([0, 3]), 3, 5)  # user 0 again interacts with item 0, and 3
    out = evaluate(score_fn, train, truth, ks=[5, 5], num_items=5)
    # user 0 ranking: 1,2,3,4 then masked 0 -> hits [0,0,1,0,0], |T|=2: DCG .5, IDCG 1.6309297536
    assert out["recall@5"] == pytest.approx(0.5)
    assert out["ndcg@5"] == pytest.approx(0.3065735964)
    assert out["precision@5"] == pytest.approx(0.2)
    assert out["mrr@5"] == pytest.approx(1 / 3)
    assert out["coverage@5"] == pytest.approx(0.8)  # {1,2,3,4}
    assert out["avg_pop@5"] == pytest.approx(0.5)  # train counts [1,0,1,0,1] over 1,2,3,4: not the masked 0


def test_evaluate_ignores_stored_zeros_and_nan_scores() -> None:
    """A weighted matrix's stored zero is no positive; a NaN score (a diverged row) is never ranked."""
    import scipy.sparse as sp

    train, _, score_fn = _toy()
    truth = sp.csr_matrix((np.array([1.0, 0.0, 0.0]), (np.array([0, 0, 1]), np.array([1, 3, 0]))), shape=(3, 5))
    out = evaluate(score_fn, train, truth, ks=[1], num_items=5)
    assert out["num_users"] == 1.0 and out["recall@1"] == pytest.approx(1.0)  # user 0's item 1, ranked first
    table = torch.tensor([[10.0, float("nan"), 8, 7, 6], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    out = evaluate(lambda u: table[u].clone(), train, truth, ks=[4], num_items=5)
    # user 0: item 0 masked, item 1 NaN -> 2,3,4 then masked filler: item 1 is no hit
    assert out["recall@4"] == 0.0 and out["coverage@4"] == pytest.approx(0.6)
    # a score that overflowed to +inf (a half-precision scorer) still ranks first and is a hit
    table = torch.tensor([[0.0, 7e4, 1, 2, 3], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]).half().float()
    out = evaluate(lambda u: table[u].clone(), train, truth, ks=[1], num_items=5)
    assert out["recall@1"] == 1.0 and out["ndcg@1"] == 1.0 and out["coverage@1"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match=">= 1"):
        evaluate(score_fn, train, truth, ks=[0, 5], num_items=5)
    with pytest.raises(ValueError, match="item columns"):
        evaluate(score_fn, train, to_csr(np.array([0]), np.array([1]), 3, 4), ks=[2], num_items=5)
    with pytest.raises(ValueError, match="but truth has items for user 1"):  # not an IndexError from the masking
        evaluate(score_fn, to_csr(np.array([0]), np.array([1]), 1, 5), to_csr(np.array([1]), np.array([2]), 2, 5),
                 ks=[2], num_items=5)
    # rows past the last user with truth items need not be in train: (indptr, indices) ending early
    short = evaluate(lambda u: table[u].clone(), (np.array([0, 0, 1]), np.array([0])),
                     to_csr(np.array([1]), np.array([4]), 3, 5), ks=[1], num_items=5)
    assert short["num_users"] == 1.0 and short["recall@1"] == 1.0  # user 1: item 4 first, item 0 masked


def test_a_training_pair_given_twice_as_indptr_and_indices_is_one_positive():
    """The (indptr, indices) form counted a repeated training pair twice in avg_pop (the default
    popularity is the training matrix's column sums); a sparse matrix counted it once."""
    import scipy.sparse as sp
    import torch

    from gnn.evaluate import evaluate

    test = sp.csr_matrix((np.ones(2), ([0, 1], [2, 3])), shape=(2, 4))
    scores = lambda users: torch.tensor([[4.0, 3.0, 2.0, 1.0]]).repeat(len(users), 1)  # noqa: E731
    pair = evaluate(scores, (np.array([0, 2, 3]), np.array([0, 0, 1])), test, [2], 4)
    matrix = evaluate(scores, sp.csr_matrix((np.ones(3), [0, 0, 1], [0, 2, 3]), shape=(2, 4)), test, [2], 4)
    # u0 gets items 1 and 2 (popularity 1 and 0), u1 items 0 and 2 (1 and 0, where the pair twice made 2 and 0)
    assert pair["avg_pop@2"] == matrix["avg_pop@2"] == 0.5
