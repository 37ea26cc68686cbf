"""Dynamic probabilistic pruning (Gonzalez-Carabarin et al. 2022): learned, exactly-k-of-n masks.

=================  ==============================================================
``sampler``        Gumbel-top-k: an exact k-hot sample, its successive-softmax relaxation
``masks``          a mask parametrization that owns its logits, at three granularities and in tiles
``pruner``         the DPP training hook (temperature, logits' parameter group, regulariser) and ``freeze``
``metrics``        the course's information-theoretic confidence and diversity of a layer's mask
``storage``        bits for values plus bits that say which k of n: the compression table
=================  ==============================================================
"""
