"""Lottery tickets: per-layer IMP rates, rewinding, controls and the three retraining methods."""

import pytest
import torch

from course_lib.chapters import ch03_lottery_tickets
from course_lib.pruning import lottery as L
from course_lib.pruning import procedures
from course_lib.masks import get_masks
from course_lib.models import build_model
from course_lib.training import TrainConfig, evaluate, train
from tests.test_training import _subset


@pytest.fixture(scope="module")
def small(quick_splits):
    return _subset(quick_splits, n=1000)


def test_imp_round_masks_prune_twenty_percent_per_round_and_the_output_at_half():
    model = build_model("lenet300")
    masks = L.imp_round_masks(model, 3, rate=0.2)
    kept = {n: float(m.mean()) for n, m in masks.items()}
    assert kept["net.fc1.weight"] == pytest.approx(0.8 ** 3, abs=1e-4)
    assert kept["net.fc3.weight"] == pytest.approx(0.9 ** 3, abs=2e-3)


def test_tickets_rewind_to_theta0_and_keep_their_masks(small):
    config = TrainConfig(epochs=2, schedule="step")
    tickets, theta0 = L.iterative_magnitude_pruning("lenet300", small, config, rounds=2, eval_every=4, progress=False)
    assert [t.round for t in tickets] == [0, 1, 2]
    assert tickets[2].density < tickets[1].density < 1.0 == tickets[0].density
    assert torch.equal(theta0["net.fc1.weight"], build_model("lenet300", seed=0).state_dict()["net.fc1.weight"])
    # Round 2 only prunes survivors of round 1.
    assert torch.all(tickets[2].masks["net.fc1.weight"] <= tickets[1].masks["net.fc1.weight"])
    assert torch.all(tickets[2].model.net.fc1.weight[tickets[2].masks["net.fc1.weight"] == 0] == 0)
    assert tickets[1].history.eval_steps[:2] == [4, 8] and tickets[1].history.early_stopping_step % 4 == 0


def test_theta_k_is_the_full_runs_state_and_rewinding_replays_the_schedule(small):
    config = TrainConfig(epochs=3, schedule="step")
    theta1 = L.weights_after("lenet300", small, config, epochs=1, progress=False)
    steps_per_epoch = -(-len(small.train) // config.batch_size)
    seen = {}

    def snapshot(model, step):
        if step == steps_per_epoch:
            seen.update({k: v.clone() for k, v in model.state_dict().items()})

    full = build_model("lenet300")
    history = train(full, small, config, hooks=[snapshot], progress=False)
    assert all(torch.equal(theta1[k], seen[k]) for k in theta1), "theta_1 must be the full run's weights at epoch 1"
    resumed = build_model("lenet300")
    resumed.load_state_dict(theta1)
    rest = train(resumed, small, config, start_epoch=1, progress=False)
    assert rest.lr == history.lr[1:], "rewinding replays the learning rates of epochs 2..3"
    # The optimizer state is not rewound (as in the papers), so the end point differs from the full run's.
    assert not torch.equal(resumed.net.fc1.weight, theta1["net.fc1.weight"])


def test_controls_share_the_tickets_mask_or_counts(small):
    config = TrainConfig(epochs=1, schedule="step")
    tickets, theta0 = L.iterative_magnitude_pruning("lenet300", small, config, rounds=1, progress=False)
    reinit, _ = L.random_reinit_control("lenet300", tickets[1], small, config, progress=False)
    assert all(torch.equal(get_masks(reinit)[k], tickets[1].masks[k]) for k in tickets[1].masks)
    randmask, _ = L.random_mask_control("lenet300", tickets[1], theta0, small, config, progress=False)
    for k, m in get_masks(randmask).items():
        assert m.sum() == tickets[1].masks[k].sum() and not torch.equal(m, tickets[1].masks[k])


@pytest.mark.parametrize("method", ["fine-tune", "weight rewinding", "LR rewinding"])
def test_retraining_methods_keep_the_mask(small, method):
    config = TrainConfig(epochs=2, schedule="step")
    trained = build_model("lenet300")
    train(trained, small, config, progress=False)
    masks = L.imp_round_masks(trained, 2)
    theta1 = L.weights_after("lenet300", small, config, epochs=1, progress=False)
    model, history = L.retrain_after_pruning(method, trained, masks, theta1, small, config, rewind_epoch=1,
                                             progress=False)
    assert len(history.train_loss) == 1
    assert torch.all(model.net.fc1.weight[masks["net.fc1.weight"] == 0] == 0)
    expected_lr = config.lr * 0.01 if method == "fine-tune" else config.lr * 0.1
    assert history.lr[0] == pytest.approx(expected_lr)


def test_fine_tuning_at_the_end_of_a_cosine_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        L.final_learning_rate(TrainConfig(epochs=2))


def test_ticket_and_controls_over_a_seed_are_one_paired_row_each(small):
    config = TrainConfig(epochs=1, schedule="step")
    rows = ch03_lottery_tickets.ticket_vs_controls("lenet300", small, config, rounds=2, seed=3, progress=False)
    assert [r["method"] for r in rows] == ["dense", "ticket", "random re-init", "random mask"]
    assert rows[0]["density"] == 1.0  # the dense network this seed's IMP started from (claim 1's reference)
    assert len({r["density"] for r in rows[1:]}) == 1 and 0.6 < rows[1]["density"] < 0.7  # 0.8 ** 2 of the hidden weights
    # The seed replaces config.seed: seed 3 finds the ticket (and trains the dense network) that IMP from seed 3 does.
    tickets, _ = L.iterative_magnitude_pruning("lenet300", small, TrainConfig(epochs=1, schedule="step", seed=3), 2,
                                               progress=False)
    assert rows[0]["test_acc"] == evaluate(tickets[0].model, small.test)
    assert rows[1]["test_acc"] == evaluate(tickets[-1].model, small.test)


def test_seed_0_of_the_comparison_over_seeds_is_section_1s_run_trained_once(small, monkeypatch, tmp_path):
    # In the quick profile the comparison over seeds has the chapter's data and recipe: its seed 0 is sections 1
    # and 2's IMP and controls, which the run cache must hand over instead of training them again.
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    config = TrainConfig(epochs=1, schedule="step")
    tickets, _, reinit, randmask = ch03_lottery_tickets.lottery_runs(small, config, 2, 0.2, [1, 2], progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("seed 0 trained a network that section 1 had already trained")

    monkeypatch.setattr(L, "train", no_training)  # IMP's dense round
    monkeypatch.setattr(procedures, "train", no_training)  # every masked training (tickets and controls)
    rows = ch03_lottery_tickets.ticket_vs_controls("lenet300", small, config, rounds=2, seed=0, progress=False)
    expected = {"dense": tickets[0].model, "ticket": tickets[2].model, "random re-init": reinit[2][0],
                "random mask": randmask[2][0]}
    assert {r["method"]: r["test_acc"] for r in rows} == {m: evaluate(n, small.test) for m, n in expected.items()}


def test_the_random_mask_control_is_keyed_by_the_weights_it_starts_from(small, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    config = TrainConfig(epochs=1, schedule="step")
    tickets, theta0 = ch03_lottery_tickets.imp_runs("lenet300", small, config, 1, 0.2, progress=False)
    ch03_lottery_tickets.control_run("random mask", "lenet300", tickets[1], theta0, small, config, progress=False)
    trained = []
    monkeypatch.setattr(procedures, "train", lambda *a, **k: trained.append(1) or L.History())
    other_start = {name: tensor + 1.0 for name, tensor in theta0.items()}  # another θ₀, the same ticket
    ch03_lottery_tickets.control_run("random mask", "lenet300", tickets[1], other_start, small, config, progress=False)
    assert trained, "a random mask on other starting weights was read from the cache instead of trained"
