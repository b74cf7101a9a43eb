"""Step 1: DiT and Caduceus-PS losses and gradients on the GPU against the CPU, same weights."""

from __future__ import annotations

from gpu_suite.framework import Suite, read_json, status_of, why


def step_losses(s: Suite, limit: float) -> None:
    out = s.work / "losses.json"
    cmd = s.run(["python", "benchmarks/gpu_suite", "--_step", "losses", "--json", str(out)]
                + (["--dry-run"] if s.dry else []), limit)
    data = read_json(out) or []
    for r in data:
        ok = r.pop("ok")
        s.add("1 correctness", r.pop("what"), r, "ok" if ok else "fail", "" if ok else "outside tolerance",
              cmd.shown)
    if not data:
        s.add("1 correctness", "DiT and Caduceus losses, GPU vs CPU", status=status_of(cmd, False), note=why(cmd),
              command=cmd.shown)


def inner_losses(dry: bool) -> list[dict]:
    """The same weights, tokens and diffusion noise on the GPU and the CPU: the loss and gradients must agree.

    The CPU side runs float32 with the torch scan; the GPU side float32 and bf16 autocast with our Triton scan
    for Caduceus. On a dry run the "GPU" is the CPU again (same numbers: it checks the plumbing)."""
    import copy

    import torch
    from train_throughput import config_for  # benchmarks/ is on sys.path (__main__.py)

    from mdlm_dna.diffusion.mdlm import DrawnNoise
    from mdlm_dna.train.lit_module import DiffusionModule

    dev = torch.device("cpu" if dry else "cuda")
    batch, length = (2, 64) if dry else (4, 1024)
    rows = []
    for model in (["dit_tiny", "caduceus_ps"] if dry else ["dit_small", "caduceus_ps"]):
        cfg = config_for(model, length, batch, tiny=dry)
        if model.startswith("caduceus"):
            cfg["model"]["scan_backend"] = "torch"
        torch.manual_seed(0)
        ref = DiffusionModule(cfg).objective.eval()
        cfg_dev = copy.deepcopy(cfg)
        if model.startswith("caduceus") and not dry:
            cfg_dev["model"]["scan_backend"] = "triton"
        other = DiffusionModule(cfg_dev).objective.eval()
        other.load_state_dict(ref.state_dict())
        other.to(dev)
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, 4, (batch, length), generator=g)
        noise = DrawnNoise(t_uniform=torch.rand(batch, generator=g),
                           mask_uniform=torch.rand(batch, length, generator=g))

        def loss_and_grads(obj, device, bf16: bool, x=x, noise=noise) -> tuple[float, list[torch.Tensor]]:
            obj.zero_grad(set_to_none=True)
            nz = DrawnNoise(noise.t_uniform.to(device), noise.mask_uniform.to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = obj.nelbo(x.to(device), generator=nz).per_token
            loss.backward()
            return loss.item(), [p.grad.detach().float().cpu() if p.grad is not None else torch.zeros(p.shape)
                                 for p in obj.parameters()]

        l_ref, g_ref = loss_and_grads(ref, torch.device("cpu"), False)
        l32, g32 = loss_and_grads(other, dev, False)
        l16, _ = loss_and_grads(other, dev, True)
        flat_ref, flat32 = torch.cat([t.flatten() for t in g_ref]), torch.cat([t.flatten() for t in g32])
        grad_err = ((flat32 - flat_ref).norm() / flat_ref.norm().clamp_min(1e-30)).item()
        err32, err16 = abs(l32 - l_ref) / abs(l_ref), abs(l16 - l_ref) / abs(l_ref)
        # float32 on a GPU: other reduction orders (and TF32 where enabled), far under 1e-3; bf16 activations ~1e-2
        ok = err32 < 2e-3 and grad_err < 1e-2 and err16 < 3e-2
        side = "CPU again (dry run)" if dry else "GPU"
        scan = " (GPU: Triton scan; CPU: torch scan)" if model.startswith("caduceus") and not dry else ""
        rows.append({"what": f"{model} loss and gradients, {side} vs CPU, same weights{scan}", "ok": ok,
                     "CPU loss": l_ref, "fp32 loss rel err": err32, "bf16 loss rel err": err16,
                     "fp32 grad rel err": grad_err, "B x L": f"{batch} x {length}"})
        print(rows[-1], flush=True)
    return rows
