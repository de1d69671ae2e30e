"""VAE losses as pure functions (torch tensors in, tensors and floats out)."""
from __future__ import annotations

import torch


def gaussian_nll(recon: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor | float) -> torch.Tensor:
    """-log N(x | recon, sigma^2), summed over leads x samples, averaged over the batch.

    Per element: ``0.5 * ((x - recon) / sigma)**2 + log(sigma)``; the constant
    ``0.5 * log(2 * pi)`` per element is dropped (it moves no gradient).
    ``log_sigma`` broadcasts against (B, leads, samples): a scalar or (leads, 1).
    """
    log_sigma = torch.as_tensor(log_sigma, dtype=recon.dtype, device=recon.device)
    per_element = 0.5 * ((x - recon) * torch.exp(-log_sigma)) ** 2 + log_sigma
    per_element = per_element.expand_as(recon)
    return per_element.flatten(1).sum(dim=1).mean()


def kl_elementwise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per record and dimension, (B, D), in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form KL to the standard normal prior.

    Returns ``(per_dimension, total)``: the batch-mean KL of each latent
    dimension, shape (D,), and their sum (the per-record KL, batch-averaged).
    """
    per_dim = kl_elementwise(mu, logvar).mean(dim=0)
    return per_dim, per_dim.sum()


def vae_loss(out, x: torch.Tensor, beta: float, log_sigma: torch.Tensor | float) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative beta-ELBO: ``gaussian_nll(out.recon_net, x) + beta * KL``.

    ``out`` is a ``VAEOutput``; ``x`` is the batch in network units (the
    model's ``adapter.to_network(beats)``), matching ``out.recon_net``.
    Logs are plain floats: loss, nll, kl, beta, mse (network units), sigma.
    """
    nll = gaussian_nll(out.recon_net, x, log_sigma)
    _, kl = kl_divergence(out.mu, out.logvar)
    loss = nll + float(beta) * kl
    with torch.no_grad():
        mse = torch.mean((out.recon_net - x) ** 2)
        sigma = torch.exp(torch.as_tensor(log_sigma, dtype=x.dtype)).mean()
    logs = {"loss": float(loss.detach()), "nll": float(nll.detach()), "kl": float(kl.detach()),
            "beta": float(beta), "mse": float(mse), "sigma": float(sigma)}
    return loss, logs


def kl_warmup(epoch: float, warmup_epochs: float) -> float:
    """KL weight factor in [0, 1]: ``epoch / warmup_epochs``, then 1.

    Epochs count from 0, so epoch 0 trains a plain auto-encoder; pass a
    fractional epoch (``epoch + step / steps_per_epoch``) for a per-step ramp.
    ``warmup_epochs <= 0`` means no warm-up.
    """
    if warmup_epochs <= 0:
        return 1.0
    return float(min(1.0, max(0.0, epoch / warmup_epochs)))
