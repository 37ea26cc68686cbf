"""The checks of exercise 8: the design challenge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn
from torch.utils.data import TensorDataset

from course_lib import costs
from course_lib.chapters import ch08_capstone
from course_lib.data import DataSplits
from course_lib.models import LeNet300100, build_model
from course_lib.profiles import Profile, by_profile, get_profile
from course_lib.training import evaluate
from course_lib.checks.base import CheckFailed, fail, ok


MAX_DENSITY = 0.05  # at most 5 % of LeNet-300-100's weights may be non-zero
DESIGN_TARGETS = {"quick": 78.0, "full": 83.5}  # the test accuracy (%) a design must reach, per profile


class TestSplitRefused(CheckFailed):
    """A design touched the test split, which is for the final report only."""


class RefusedSplit(TensorDataset):
    """Stands in for the test split while a design is built: reading it stops the check.

    Its length is allowed (the course's cache keys count every split's images); its images and labels are
    not. It guards against a mistake, not against a determined cheat, who could load the data again.
    """

    def __init__(self, size: int) -> None:  # no tensors: there is nothing to read
        self.size = size

    def __len__(self) -> int:
        return self.size

    def _refuse(self, *_: object) -> None:
        raise TestSplitRefused("Your design used the test split (data.test). Choose everything - sparsity, "
                               "method, epochs - on the validation split (data.val): the test split is for the "
                               "final report only, and the check measures it for you.")

    tensors = property(_refuse)  # type: ignore[assignment]
    __getitem__ = _refuse  # type: ignore[assignment]


def check_design_challenge(design: Callable[[DataSplits, int], nn.Module], profile: Profile | None = None,
                           seed: int = 0) -> float:
    """Score a design: ``design(data, seed)`` returns a pruned LeNet-300-100 built from ``data.train`` and ``data.val``.

    The design sees the capstone's data with the test split refused. Passing means: a LeNet-300-100, at
    most ``MAX_DENSITY`` of its weights non-zero, and test accuracy at least the profile's
    ``DESIGN_TARGETS``. Returns the test accuracy.
    """
    profile = profile or get_profile()
    data = ch08_capstone.protocols(profile)["unstructured"].data  # the capstone's data
    model = design(replace(data, test=RefusedSplit(len(data.test))), seed)  # TestSplitRefused says what was wrong
    reference = costs.layer_costs(build_model("lenet300"))
    table = costs.layer_costs(model) if isinstance(model, LeNet300100) else None
    if table is None or table.weights.tolist() != reference.weights.tolist():
        fail(f"Return the LeNet-300-100 your design pruned, with its 784-300-100-10 layers (masked or with zeros), "
              f"not {type(model).__name__} with other shapes: the 5 % counts LeNet-300-100's "
              f"{int(reference.weights.sum()):,} weights.")
    density = float(table.nonzero.sum() / reference.weights.sum())
    if density > MAX_DENSITY:
        fail(f"{density:.2%} of the weights are non-zero; the challenge allows {MAX_DENSITY:.0%}. Prune harder "
              "(count every layer's weights: a layer you leave dense counts in full).")
    accuracy = evaluate(model, data.test)
    target = by_profile(profile, DESIGN_TARGETS)
    if accuracy < target:
        fail(f"Test accuracy {accuracy:.2f} % with {density:.2%} of the weights: below the target of {target:.1f} %. "
              "Compare designs on data.val: how the layers share the weights (global ranking, or a dense "
              "classifier), when to prune (after training, gradually) and how long to retrain.")
    ok(f"design accepted: {accuracy:.2f} % test accuracy (target {target:.1f} %) with {density:.2%} of the weights")
    return accuracy
