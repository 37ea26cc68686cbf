"""Masks that change during training: schedules, layer densities and mask updaters.

=================  ==============================================================
``schedules``      how much, when: one-shot, iterative, cubic AGP, cosine drop fraction
``densities``      how dense each layer is: uniform, Erdős–Rényi, ERK
``updaters``       which weights: AGP (prune only), static, SET and RigL
=================  ==============================================================
"""
