"""Training utilities: losses (gap-masked MSE/L1/SSIM/gradients, phase WCA)."""
from .losses import (CombinedInpaintLoss, WCALoss, gaussian_window, gradient_loss, masked_l1, masked_mse,
                     phasor_to_phase, ssim, ssim_loss, wca_loss)

__all__ = [
    "CombinedInpaintLoss", "WCALoss", "gaussian_window", "gradient_loss", "masked_l1", "masked_mse",
    "phasor_to_phase", "ssim", "ssim_loss", "wca_loss",
]
