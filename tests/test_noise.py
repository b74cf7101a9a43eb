import pytest
import torch

from mdlm_dna.diffusion.noise import SCHEDULES, build_schedule

SCHEDULE_ARGS = {
    "loglinear": {"eps": 1e-3},
    "cosine": {"eps": 1e-3},
    "geometric": {"sigma_min": 1e-4, "sigma_max": 20.0},
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_alpha_prime_matches_finite_differences(name):
    s = build_schedule(name, **SCHEDULE_ARGS[name])
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    fd = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(s.alpha_prime(t), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_boundaries_and_monotone(name):
    s = build_schedule(name, **SCHEDULE_ARGS[name])
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    a = s.alpha(t)
    assert abs(a[0].item() - 1.0) < 2e-4 and a[-1].item() < 2e-3
    assert torch.all(a[1:] < a[:-1])
    torch.testing.assert_close(s.sigma(t), -torch.log(a))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_one_minus_alpha_is_accurate_near_zero(name):
    s = build_schedule(name, **SCHEDULE_ARGS[name])
    t64 = torch.tensor([1e-7, 1e-5, 1e-3], dtype=torch.float64)
    exact = s.one_minus_alpha(t64)
    got = s.one_minus_alpha(t64.float()).double()
    torch.testing.assert_close(got, exact, rtol=1e-5, atol=0)  # float32 keeps relative accuracy
    w = s.loss_weight(torch.tensor([1e-6, 0.5, 1.0]))
    assert torch.isfinite(w).all() and (w > 0).all()


def test_loglinear_weight_is_one_over_t():
    s = build_schedule("loglinear", eps=1e-3)
    t = torch.tensor([0.001, 0.1, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(s.loss_weight(t), 1 / t)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown noise schedule 'linear'"):
        build_schedule("linear")
