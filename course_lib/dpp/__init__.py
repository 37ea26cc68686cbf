"""Dynamic probabilistic pruning (Gonzalez-Carabarin et al. 2022): learned, exactly-k-of-n masks.

=================  ==============================================================
``sampler``        Gumbel-top-k: an exact k-hot sample, its successive-softmax relaxation
``masks``          a mask parametrization that owns its logits, at three granularities and in tiles
``metrics``        the course's information-theoretic confidence and diversity of a layer's mask
=================  ==============================================================
"""
