"""How far the top Hessian eigenspace moves between two sharpness measurements: the floor under
any solver warm-started from the previous measurement, on the edge-of-stability trajectories.

A tracking solver carries the previous measurement's top vectors and spends a few products on
the new Hessian. The best such a solver can carry is the previous Hessian's exact top-m
eigenvectors. This script hands it that oracle and asks what m products buy:

  rr m       Rayleigh-Ritz of the new Hessian on the previous exact top-m eigenvectors (m
             products): the fraction of measurements whose top Ritz value is within 1e-3 of the
             new lambda_max, and the fraction a residual certificate (||H y - theta y|| <=
             1e-3 theta, Bauer-Fike) could accept
  lanczos    Lanczos started from the previous exact top eigenvector, run to the tracker's
             tolerance (residual <= 1e-3 theta): its products per measurement
  turn       |cos| between the previous and the new top eigenvector
  cluster    eigenvalues within 10% of lambda_max among the top `--top` (saturates at --top)

The trajectories are `benchmarks/sharpness_solvers.py`'s (float32 GD on the shipped quick
config, snapshots every `--every` steps); the spectra are computed in float64 on float64 copies
of the snapshots, by Lanczos at tol 1e-8 for the top `--top` eigenpairs.

Usage: .venv/bin/python benchmarks/sharpness_floor.py [--steps 3000] [--every 25]
       [--lrs 0.1 0.15 0.2 0.3] [--top 8]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch
from sharpness_solvers import trajectory

from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.linalg.lanczos import lanczos

TOL = 1e-3
BLOCKS = (1, 2, 4, 8)


def spectrum(hvp, top: int, step: int):
    generator = torch.Generator().manual_seed(step)
    return lanczos(hvp, hvp.dim, k=top, tol=1e-8, max_iter=400, dtype=torch.float64,
                   generator=generator)


def rayleigh_ritz(hvp, basis: torch.Tensor) -> tuple[float, float]:
    """Top Ritz value of the operator on span(basis) and its relative residual."""
    image = torch.stack([hvp(basis[:, j]) for j in range(basis.shape[1])], dim=1)
    gram = basis.T @ image
    theta, s = torch.linalg.eigh((gram + gram.T) / 2)
    y, hy = basis @ s[:, -1], image @ s[:, -1]
    return float(theta[-1]), float((hy - theta[-1] * y).norm() / theta[-1].abs())


def floor(lr: float, steps: int, every: int, top: int) -> list[dict]:
    run = trajectory(lr, steps, every)
    model = copy.deepcopy(run.model).double()
    batch = tuple(t.double() for t in run.batch)
    rows, previous = [], None
    for step, snapshot in sorted(run.snapshots.items()):
        model.load_state_dict(snapshot)
        with hessian_vector_product(model, run.loss_fn, batch) as hvp:
            exact = spectrum(hvp, top, step)
            lam, vectors = float(exact.eigenvalues[0]), exact.eigenvectors
            row = {"lr": lr, "step": step, "lambda": lam,
                   "cluster": int((exact.eigenvalues >= 0.9 * lam).sum())}
            if previous is not None:
                for m in BLOCKS:
                    if m <= top:
                        theta, residual = rayleigh_ritz(hvp, previous[:, :m])
                        row[f"rr{m}_err"] = (lam - theta) / lam
                        row[f"rr{m}_cert"] = residual <= TOL
                warm = lanczos(hvp, hvp.dim, k=1, tol=TOL, max_iter=200,
                               v0=previous[:, 0].clone(), dtype=torch.float64)
                row["lanczos_hvps"] = warm.n_matvec
                row["lanczos_err"] = abs(lam - float(warm.eigenvalues[0])) / lam
                row["turn"] = abs(float(previous[:, 0] @ vectors[:, 0]))
            rows.append(row)
            previous = vectors
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"edge_of_stability quick trajectories, {args.steps} steps, a measurement every "
          f"{args.every}; oracle: the previous measurement's exact top eigenvectors")
    blocks = [m for m in BLOCKS if m <= args.top]
    head = (f"  {'eta':>5} {'n':>4} " + " ".join(f"{'rr' + str(m) + ' ok/cert':>13}"
                                              for m in blocks)
            + f" {'lanczos HVPs':>12} {'turn med':>8} {'cluster med':>11}")
    print(head)
    every_row = []
    for lr in args.lrs:
        rows = [r for r in floor(lr, args.steps, args.every, args.top) if "turn" in r]
        every_row += rows
        print(row_line(f"{lr:5g}", rows, blocks), flush=True)
    print(row_line("  all", every_row, blocks))
    print(f"  ok: top Ritz value within {TOL:g} of lambda_max (fraction of measurements); cert: "
          "its residual certifies it; lanczos HVPs: mean (max)")


def row_line(label: str, rows: list[dict], blocks: list[int]) -> str:
    cells = []
    for m in blocks:
        ok = np.mean([r[f"rr{m}_err"] <= TOL for r in rows])
        cert = np.mean([r[f"rr{m}_cert"] for r in rows])
        cells.append(f"{ok:6.0%}/{cert:5.0%}")
    hvps = [r["lanczos_hvps"] for r in rows]
    return (f"  {label} {len(rows):4d} " + " ".join(f"{c:>13}" for c in cells)
            + f" {statistics.mean(hvps):7.1f} ({max(hvps):3d})"
            + f" {statistics.median(r['turn'] for r in rows):8.3f}"
            + f" {statistics.median(r['cluster'] for r in rows):11.0f}")


if __name__ == "__main__":
    main()
