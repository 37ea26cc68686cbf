"""The checks of exercise 3: lottery tickets."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from course_lib.pruning import lottery
from course_lib.masks import apply_masks, get_masks
from course_lib.models import build_model
from course_lib.checks.base import fail, ok


def check_imp_round(imp_round: Callable[[nn.Module, dict, float], nn.Module]) -> None:
    """``imp_round(trained, theta0, rate)``: prune ``rate`` of each layer's *surviving* weights by magnitude
    (output layer at half rate), rewind survivors to ``theta0``, return the masked, rewound model.

    Checked in round 1 (``trained`` has no masks) and in round 3 (``trained``
    carries the masks of two earlier rounds, as in a real IMP loop).
    """
    theta0 = build_model("lenet300", seed=1).state_dict()
    for round_ in (1, 3):
        trained = build_model("lenet300", seed=2)  # stands in for a trained network: different weights from theta0
        if round_ > 1:
            apply_masks(trained, lottery.imp_round_masks(trained, round_ - 1, rate=0.2))
        before = get_masks(trained)
        expected = lottery.imp_round_masks(trained, round_, rate=0.2)
        ticket = imp_round(copy.deepcopy(trained), copy.deepcopy(theta0), 0.2)
        got = get_masks(ticket)
        where = f"round {round_}" + (" (the trained network already carries two rounds of masks)" if round_ > 1 else "")
        if set(got) != set(expected):
            fail(f"{where}: attach one mask per weight ({sorted(expected)}) with course_lib.masks.apply_masks; "
                  f"found {sorted(got)}.")
        output = list(expected)[-1]
        for name in expected:
            alive = before.get(name, torch.ones_like(expected[name]))
            if ((got[name] > 0) & (alive == 0)).any():
                fail(f"{where}, {name}: a weight pruned in an earlier round is back. Keep the old zeros: rank only "
                      "the survivors.")
            kept, should = int(got[name].sum()), int(expected[name].sum())
            if kept != should:
                share = 0.1 if name == output else 0.2
                if kept == int(alive.sum()) - round(share * alive.numel()):
                    hint = "you pruned `rate` of ALL the layer's weights; prune `rate` of its SURVIVORS."
                elif name == output:
                    hint = "the output layer is pruned at HALF the rate."
                else:
                    hint = "prune `rate` of THIS layer's surviving weights."
                fail(f"{where}, {name}: you kept {kept}, expected {should}. {hint}")
            if not torch.equal(got[name], expected[name]):
                fail(f"{where}, {name}: right count, other weights: rank the TRAINED weights by |w| (not theta_0).")
            layer = ticket.get_submodule(name.removesuffix(".weight"))
            if not torch.allclose(layer.weight.detach(), theta0[name] * expected[name]):
                fail(f"{where}, {name}: the surviving weights are not theta_0: rewind them (load theta0) before "
                      "masking.")
    ok("IMP rounds 1 and 3: masks match course_lib.pruning.lottery.imp_round_masks, survivors rewound to theta_0")


def check_random_reinit(random_reinit: Callable[[dict, int], nn.Module]) -> None:
    """``random_reinit(masks, seed)``: a fresh LeNet-300-100 (seed ``seed``) carrying ``masks``."""
    masks = lottery.imp_round_masks(build_model("lenet300", seed=5), 2)
    model = random_reinit({k: v.clone() for k, v in masks.items()}, 123)
    got = get_masks(model)
    if set(got) != set(masks) or any(not torch.equal(got[k], masks[k]) for k in masks):
        fail("the control must carry exactly the ticket's masks (attach them with apply_masks).")
    fresh = build_model("lenet300", seed=123)
    if not torch.equal(model.net.fc1.weight.detach(), fresh.net.fc1.weight.detach() * masks["net.fc1.weight"]):
        fail("the surviving weights should be those of build_model('lenet300', seed=seed): a NEW initialization.")
    ok("random re-init control: same masks, new initial weights")
