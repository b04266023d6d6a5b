"""torch's Adam over a module's parameters held in one flat tensor.

On a CPU, ``torch.optim.Adam`` (``foreach``) costs per parameter tensor on every
step: its state, a loop over the tensors for each of its operators and a host
read of each step count. The model has 20 small tensors (3,064 numbers), so a
step of the default training spent about a quarter of its time in Adam and
``zero_grad``. Adam's update is elementwise, so the same update on one tensor that
holds all the parameters gives the same numbers, in one operator per stage.

:class:`FlatAdam` copies the parameters into one tensor, makes each parameter a
view of its slice (the module, its ``state_dict`` and checkpoints are unchanged),
and before each step gathers the parameters' gradients into the flat tensor's.
The module's optimiser takes torch's single-tensor Adam (``foreach=False``): on
one tensor the ``foreach`` path's per-step list handling only adds time (about
50 us of a 1.6 ms step at the default batch of 8), and both compute the same
numbers. The training numbers are torch's Adam's (``foreach``, on the separate
parameters) bit for bit
(``tests/test_flat_adam.py``), with one documented difference: a parameter without
a gradient in a step takes a zero gradient, where torch's Adam skips it. For a
parameter that never has one (e.g. the parameter net under ``loss.kind: vae``) both
leave it unchanged; they differ only for a parameter with a gradient in some steps
and not in others, which no model here has (checked per step for the default,
history and statistical-loss models on two cohorts).

Create it after the module is on its device (Lightning calls
``configure_optimizers`` after moving the module): moving the module afterwards
detaches the parameters from the flat tensor.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class FlatAdam(torch.optim.Adam):
    """``torch.optim.Adam(parameters, **options)`` on one flat tensor."""

    def __init__(self, parameters: Iterable[torch.Tensor], **options) -> None:
        self.views = [p for p in parameters if p.requires_grad]
        if not self.views:
            raise ValueError("FlatAdam got no parameters that require a gradient")
        with torch.no_grad():
            flat = torch.cat([p.reshape(-1) for p in self.views])
        flat.requires_grad_()
        offset = 0
        for p in self.views:
            p.data = flat.detach()[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        super().__init__([flat], **options)
        self.flat = flat

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.views:
            p.grad = None
        super().zero_grad(set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:  # e.g. Lightning's, which may run backward
            with torch.enable_grad():
                loss = closure()
        grads = [
            p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1)
            for p in self.views
        ]
        self.flat.grad = torch.cat(grads)
        for p in self.views:
            p.grad = None
        super().step()
        return loss
