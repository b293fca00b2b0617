"""heteroagg.learn.particle_detector: the centre-map network, its targets, loss and decoding."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heteroagg.learn.particle_detector import (  # noqa: E402
    DETECTOR_STRIDE,
    ParticleDetector,
    decode_detections,
    detect_particles,
    detector_loss,
    detector_targets,
    turn_positions,
)


@pytest.mark.parametrize("quarter_turns", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_turned_positions_follow_the_turned_image(quarter_turns, flip):
    shape = (6, 9)
    rng = np.random.default_rng(quarter_turns + 4 * flip)
    positions = np.stack(np.divmod(rng.choice(54, 5, replace=False), 9), axis=1)
    image = np.zeros(shape)
    image[positions[:, 0], positions[:, 1]] = np.arange(1, 6)
    turned = np.rot90(np.fliplr(image) if flip else image, quarter_turns)
    got = turn_positions(positions, quarter_turns, flip, shape)
    for k in range(5):
        row, col = np.rint(got[k]).astype(int)
        assert turned[row, col] == k + 1


def logits_of(targets):
    """Output maps a perfect detector would give: the target heat as logits."""
    heat = targets.heat.clamp(1e-6, 1 - 1e-6)
    return torch.cat([torch.log(heat / (1 - heat))[:, None], targets.regression], dim=1)


def test_decoding_the_targets_gives_back_the_particles():
    positions = np.array([[10.3, 20.7], [40.0, 41.2], [70.6, 12.1], [33.9, 90.4]])
    radii = np.array([2.0, 5.5, 1.2, 9.0])
    targets = detector_targets([positions], [radii], (96, 112))
    assert targets.heat.shape == (1, 48, 56) and int(targets.mask.sum()) == 4
    found = decode_detections(logits_of(targets)[0], threshold=0.5)
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order, :2], positions[np.argsort(positions[:, 0])], atol=1e-5)
    np.testing.assert_allclose(found[order, 2], radii[np.argsort(positions[:, 0])], rtol=1e-5)
    np.testing.assert_allclose(found[:, 3], 1.0, atol=1e-5)
    # at most max_particles of them, the hottest; none at 0
    maps = logits_of(targets)[0]
    assert len(decode_detections(maps, threshold=0.5, max_particles=np.int64(2))) == 2
    assert len(decode_detections(maps, threshold=0.5, max_particles=0)) == 0


def test_target_heat_is_the_gaussian_of_the_nearest_centre():
    positions, radius = np.array([[21.4, 30.9]]), 6.0
    targets = detector_targets([positions], [np.array([radius])], (64, 64))
    centre = (positions[0] + 0.5) / DETECTOR_STRIDE - 0.5
    sigma = radius / DETECTOR_STRIDE / 3.0
    for cell in [(10, 15), (12, 14), (9, 17), (11, 12)]:
        d2 = (cell[0] - centre[0]) ** 2 + (cell[1] - centre[1]) ** 2
        expected = 1.0 if cell == (10, 15) else math.exp(-d2 / (2 * sigma**2))
        assert float(targets.heat[0, cell[0], cell[1]]) == pytest.approx(expected, rel=1e-5)
    assert float(targets.heat[0, 28, 3]) == 0.0
    outside = detector_targets([np.array([[-5.0, 3.0]])], [np.array([2.0])], (64, 64))
    assert float(outside.heat.sum()) == 0.0


def test_the_loss_is_the_focal_loss_written_out():
    rng = np.random.default_rng(3)
    positions = [rng.uniform(0, 32, (4, 2)), rng.uniform(0, 32, (2, 2))]
    radii = [rng.uniform(1, 4, 4), rng.uniform(1, 4, 2)]
    targets = detector_targets(positions, radii, (32, 32))
    maps = torch.from_numpy(rng.normal(0, 2, (2, 4, 16, 16)).astype(np.float32))
    total, focal, regression = detector_loss(maps, targets)
    p = np.clip(1 / (1 + np.exp(-maps[:, 0].numpy().astype(float))), 1e-4, 1 - 1e-4)
    heat, mask = targets.heat.numpy(), targets.mask.numpy()
    centre = heat >= 1
    expected_focal = (
        -np.sum(((1 - p) ** 2 * np.log(p))[centre])
        - np.sum(((1 - heat) ** 4 * p**2 * np.log(1 - p))[~centre])
    ) / centre.sum()
    expected_regression = (
        np.abs(maps[:, 1:].numpy() - targets.regression.numpy()) * mask[:, None]
    ).sum() / centre.sum()
    assert float(focal) == pytest.approx(expected_focal, rel=1e-5)
    assert float(regression) == pytest.approx(expected_regression, rel=1e-5)
    assert float(total) == pytest.approx(expected_focal + expected_regression, rel=1e-5)
    perfect = logits_of(targets)
    perfect[:, 0] = torch.where(targets.heat >= 1, 20.0, -20.0)
    assert float(detector_loss(perfect, targets)[0]) < 1e-6


def test_a_detector_learns_to_find_discs():
    """A few steps on images of bright discs lower the loss and find them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    images, positions, radii = [], [], []
    for _ in range(8):
        pos = rng.uniform(6, 26, (2, 2))
        r = rng.uniform(2.0, 3.5, 2)
        image = np.zeros((32, 32))
        for (row, col), radius in zip(pos, r, strict=True):
            image += (
                0.002 * 2 * np.sqrt(np.clip(radius**2 - (yy - row) ** 2 - (xx - col) ** 2, 0, None))
            )
        images.append(image)
        positions.append(pos)
        radii.append(r)
    x = torch.from_numpy(np.stack(images).astype(np.float32))[:, None]
    targets = detector_targets(positions, radii, (32, 32))
    detector = ParticleDetector((8, 8, 16, 16))
    optimiser = torch.optim.Adam(detector.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(detector_loss(detector(x), targets)[0])
    for _ in range(150):
        loss = detector_loss(detector(x), targets)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.2 * first
    found = detect_particles(detector, images[0], threshold=0.3, device="cpu")
    assert len(found) >= 1
    nearest = np.min(
        np.hypot(*(found[:, None, :2] - positions[0][None]).transpose(2, 0, 1)), axis=0
    )
    assert np.all(nearest < 1.5)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="widths"):
        ParticleDetector((8, 8, 16))
    with pytest.raises(ValueError, match="threshold"):
        decode_detections(torch.zeros(4, 8, 8), threshold=1.0)
    with pytest.raises(ValueError, match=r"\(4, h, w\)"):
        decode_detections(torch.zeros(3, 8, 8))
    for bad in (-1, 2.5, True):  # -1 would have dropped the weakest peak
        with pytest.raises(ValueError, match="max_particles"):
            decode_detections(torch.zeros(4, 8, 8), max_particles=bad)
    for position, radius in (([[np.nan, 3.0]], [2.0]), ([[4.0, 3.0]], [np.inf])):
        with pytest.raises(ValueError, match="finite"):
            detector_targets([np.array(position)], [np.array(radius)], (32, 32))
    with pytest.raises(ValueError, match="multiple"):
        detector_targets([np.zeros((1, 2))], [np.ones(1)], (31, 32))
    with pytest.raises(ValueError, match="positive radius"):
        detector_targets([np.zeros((2, 2))], [np.ones(1)], (32, 32))
    with pytest.raises(ValueError, match="multiples of 16"):
        detect_particles(ParticleDetector(), np.zeros((30, 32)), device="cpu")
    with pytest.raises(ValueError, match="finite"):
        detect_particles(ParticleDetector(), np.full((32, 32), np.nan), device="cpu")
    with pytest.raises(ValueError, match="device"):
        detect_particles(ParticleDetector(), np.zeros((32, 32)), device="gpu")
