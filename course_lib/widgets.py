"""Interactive explorers for the lecture (ipywidgets).

Widgets precompute everything expensive once, so that moving a slider only
redraws a small figure and answers well within a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import clear_output, display
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import batches
from course_lib.plots import show_image


@torch.no_grad()
def class_probabilities(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000) -> torch.Tensor:
    """Softmax output of ``model`` (eval mode) for every image, shape (N, classes)."""
    model.eval()
    return torch.cat([torch.softmax(model(x), dim=1) for x, _ in batches(dataset, batch_size)])


def misclassified_browser(model: nn.Module, dataset: TensorDataset, classes: Sequence[str]) -> widgets.VBox:
    """Browse the images ``model`` gets wrong, filtered by their true class.

    A drop-down picks the true class (or all), a slider walks through that
    class's mistakes; each shows the image and the model's three most likely
    classes. The caption names the test-set index, the truth and the guess.
    """
    images, labels = dataset.tensors
    probs = class_probabilities(model, dataset)
    preds = probs.argmax(dim=1)
    wrong = torch.nonzero(preds != labels).flatten()

    choose_class = widgets.Dropdown(options=[("all classes", -1)] + [(c, i) for i, c in enumerate(classes)],
                                    value=-1, description="true class")
    slider = widgets.IntSlider(value=0, min=0, max=max(len(wrong) - 1, 0), description="mistake #",
                               continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("mistake-caption")
    figure = widgets.Output()

    def pool() -> torch.Tensor:
        c = choose_class.value
        return wrong if c < 0 else wrong[labels[wrong] == c]

    def redraw(*_: object) -> None:
        chosen = pool()
        if len(chosen) == 0:
            caption.value = f"No mistakes on the class {classes[choose_class.value]}."
            with figure:
                clear_output()
            return
        i = int(chosen[min(slider.value, len(chosen) - 1)])
        top = torch.topk(probs[i], 3)
        caption.value = (f"<b>mistake {slider.value + 1} of {len(chosen)}</b> &mdash; test image #{i}: "
                         f"true <b>{classes[labels[i]]}</b>, predicted <b>{classes[preds[i]]}</b> "
                         f"({100 * probs[i, preds[i]]:.0f} %)")
        with figure:
            clear_output(wait=True)
            fig, (left, right) = plt.subplots(1, 2, figsize=(6.5, 2.4), gridspec_kw={"width_ratios": [1, 2]})
            show_image(left, images[i], f"true: {classes[labels[i]]}")
            right.barh([classes[k] for k in top.indices], 100 * top.values.numpy(), color="tab:red")
            right.invert_yaxis()
            right.set(xlim=(0, 100), xlabel="predicted probability (%)", title="the model's top 3 classes")
            fig.tight_layout()
            display(fig)  # show only this figure (plt.show() would also flush the notebook's other open figures)
            plt.close(fig)

    def on_class(_: object) -> None:
        slider.max = max(len(pool()) - 1, 0)
        slider.value = 0
        redraw()

    choose_class.observe(on_class, names="value")
    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([choose_class, slider]), caption, figure])
