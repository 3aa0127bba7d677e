"""Writes ``format2_model.pt`` and ``format2_model_expected.npz``: a small fitted model in the
model-file format 2, saved by the code of commit c7a026c (before model files became a JSON
header plus a state dict), and its predictions on four measurements.

Kept to document the fixture; running it again with newer code would write the newer format.
"""

import numpy as np
import torch

from implicit_inverse import ImplicitDeblurRegressor
from implicit_inverse.operators import make_measurements

if __name__ == "__main__":
    clean = np.random.default_rng(0).random((8, 1, 16, 16)).astype(np.float32)
    estimator = ImplicitDeblurRegressor(kernel_size=5, kernel_sigma=1.0, regularizer="dncnn:2x4",
                                        max_epochs=2, batch_size=4, max_iter=20, noise_std=0.02,
                                        random_state=0, n_threads=1)
    measurements = make_measurements(torch.from_numpy(clean), estimator._make_operator(), 0.02,
                                     random_state=1).numpy()
    estimator.fit(measurements, clean)
    estimator.save("format2_model.pt")
    np.savez("format2_model_expected.npz", X=measurements[:4],
             images=estimator.predict(measurements[:4]))
