"""The training engine (skorch), below the estimators and beside nothing else.

- :mod:`.recipe`: ``ModelSpec`` and ``build_model``, the one recipe of the implicit model (fit,
  ``from_pretrained``, calibration);
- :mod:`.engine`: the skorch net of the implicit model (divergence handling), fed by
  :mod:`.measurements` (fresh measurements per batch), :mod:`.warm_start` (the warm-start
  cache) and :mod:`.stats` (solver statistics per batch and epoch);
- :mod:`.losses`, :mod:`.pretraining` (feed-forward pretraining of the map),
  :mod:`.streaming` (torch Datasets of clean images), :mod:`.distributed` (torchrun);
- :mod:`.denoiser`: training denoising priors; :mod:`.calibration`: a prior's ``lam`` and
  ``sigma`` for the map a spec describes and a noise level.
"""

from .denoiser import NoisyCrops, pretrain_denoiser

__all__ = ["NoisyCrops", "pretrain_denoiser"]
