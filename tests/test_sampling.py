"""Seeded class-stratified draws: what every hold-out and evaluation subsample is made of."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coded_resnext.datasets.sampling import stratified_sample, stratified_split, stratified_subset

pytestmark = pytest.mark.unit


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples on every run of CI
@given(
    labels=st.lists(st.integers(0, 7), min_size=1, max_size=80),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_sample_has_the_asked_size_keeps_proportions_and_every_class_when_there_is_room(labels, fraction, seed):
    labels = np.array(labels)
    n = round(fraction * len(labels))
    picked = stratified_sample(labels, n, seed).numpy()
    assert len(picked) == n and len(set(picked.tolist())) == n and (np.diff(picked) > 0).all()
    classes, counts = np.unique(labels, return_counts=True)
    taken = np.array([(labels[picked] == c).sum() for c in classes])
    share = counts * n / len(labels)
    if n >= len(classes):  # room for every class: none is left out; the large classes give up what that costs
        assert (taken >= 1).all() and (taken <= np.maximum(1, np.ceil(share))).all()
    else:  # the proportional share, rounded one way or the other
        assert (np.abs(taken - share) < 1).all()


def test_every_class_is_kept_when_there_is_room_even_at_the_cost_of_the_largest():
    labels = np.array([0] * 6 + [1, 2, 3, 4])
    picked = stratified_sample(labels, 5, seed=0)
    assert np.bincount(labels[picked.numpy()], minlength=5).tolist() == [1, 1, 1, 1, 1]


def test_class_sorted_labels_give_every_class_its_share():
    """The failure this replaces: the first 50 of a class-sorted list are all class 0."""
    labels = np.repeat(np.arange(10), 100)  # as torchvision's ImageFolder lists a folder
    picked = stratified_sample(labels, 50, seed=0)
    assert np.bincount(labels[picked.numpy()], minlength=10).tolist() == [5] * 10


def test_the_same_request_gives_the_same_indices_and_another_seed_others():
    labels = np.random.default_rng(1).integers(0, 5, 300)
    a, b = stratified_sample(labels, 40, 3), stratified_sample(labels, 40, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, stratified_sample(labels, 40, 4))
    assert torch.equal(stratified_sample(labels, None, 0), torch.arange(300))
    assert torch.equal(stratified_sample(labels, 1000, 0), torch.arange(300))


def test_a_split_is_disjoint_covering_and_stratified():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    kept, held = stratified_split(labels, 0.2, seed=7)
    assert sorted(kept.tolist() + held.tolist()) == list(range(100))
    assert np.bincount(labels[held.numpy()], minlength=4).tolist() == [10, 6, 3, 1]
    kept0, held0 = stratified_split(labels, 0.0, seed=7)
    assert len(held0) == 0 and torch.equal(kept0, torch.arange(100))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stratified_split(labels, 1.0, seed=0)


def test_a_subset_keeps_its_labels_to_be_sampled_again():
    dataset = torch.utils.data.TensorDataset(torch.arange(60.0), torch.arange(60) % 3)
    dataset.targets = torch.arange(60) % 3
    part = stratified_subset(dataset, 12, seed=0)
    assert len(part) == 12 and part.targets.bincount().tolist() == [4, 4, 4]
    assert [int(part[i][1]) for i in range(12)] == part.targets.tolist()
    again = stratified_subset(part, 6, seed=0)
    assert again.targets.bincount().tolist() == [2, 2, 2]
    assert stratified_subset(dataset, None, 0) is dataset
