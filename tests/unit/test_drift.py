"""Input drift's numerics (shared/ml/drift.py) on hand-made images and histograms."""

import math
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from shared.ml import drift
from shared.registry.files import encode, parse_model
from shared.schemas.models import INPUT_SUMMARIES, SUMMARIES, ModelMeta, ReferenceProfile
from tests import models as model_files


def image(*pixels: tuple[int, int, float]) -> np.ndarray:
    """A black 28x28 image with the given (row, column, value) pixels."""
    out = np.zeros((28, 28), dtype=np.uint8)
    for row, col, value in pixels:
        out[row, col] = value
    return out


def summaries(picture: np.ndarray) -> dict[str, float]:
    return dict(zip(INPUT_SUMMARIES, drift.summarise(picture[None])[0].tolist(), strict=True))


def test_a_blank_image_is_zero_everywhere() -> None:
    assert summaries(image()) == dict.fromkeys(INPUT_SUMMARIES, 0.0)


def test_one_lit_pixel_at_mnists_centre() -> None:
    assert summaries(image((14, 14, 255))) == {
        "ink_mass": 1.0,
        "bbox_height": 1.0,
        "bbox_width": 1.0,
        "centroid_offset": 0.0,
        "stroke_intensity": 255.0,
    }


def test_a_bar_20_high_and_8_wide() -> None:
    bar = np.zeros((28, 28), dtype=np.uint8)
    bar[4:24, 10:18] = 200  # rows 4..23, columns 10..17: centre (13.5, 13.5)
    got = summaries(bar)
    assert got["ink_mass"] == pytest.approx(20 * 8 * 200 / 255)
    assert (got["bbox_height"], got["bbox_width"]) == (20, 8)
    assert got["centroid_offset"] == pytest.approx(math.hypot(0.5, 0.5))
    assert got["stroke_intensity"] == pytest.approx(200)


def test_faint_pixels_are_ink_mass_but_not_strokes() -> None:
    """Below INK_LEVEL a pixel adds to the ink mass and the centroid, not to the
    bounding box or the stroke's mean."""
    faint = image((0, 0, 63), (14, 14, 255), (14, 17, 127))
    got = summaries(faint)
    assert got["ink_mass"] == pytest.approx((63 + 255 + 127) / 255)
    assert (got["bbox_height"], got["bbox_width"]) == (1, 4)
    assert got["stroke_intensity"] == pytest.approx((255 + 127) / 2)
    row = (0 * 63 + 14 * 255 + 14 * 127) / 445
    col = (0 * 63 + 14 * 255 + 17 * 127) / 445
    assert got["centroid_offset"] == pytest.approx(math.hypot(row - 14, col - 14), rel=1e-5)


def test_shifting_moves_only_the_centroid() -> None:
    bar = np.zeros((28, 28), dtype=np.uint8)
    bar[4:24, 10:18] = 200
    shifted = np.roll(bar, 6, axis=1)  # stays inside the field
    before, after = summaries(bar), summaries(shifted)
    assert after["centroid_offset"] == pytest.approx(math.hypot(0.5, 13.5 + 6 - 14))
    for name in ("ink_mass", "bbox_height", "bbox_width", "stroke_intensity"):
        assert after[name] == pytest.approx(before[name])


def test_flat_and_square_images_and_any_dtype_agree() -> None:
    rng = np.random.default_rng(3)
    pictures = rng.integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    square = drift.summarise(pictures)
    assert square.shape == (5, 5)
    np.testing.assert_allclose(drift.summarise(pictures.reshape(5, 784)), square)
    np.testing.assert_allclose(drift.summarise(pictures.astype(np.float32)), square)


def test_summarising_in_chunks_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    pictures = rng.integers(0, 256, size=(10, 784)).astype(np.uint8)
    whole = drift.summarise(pictures)
    monkeypatch.setattr(drift, "CHUNK", 3)
    np.testing.assert_array_equal(drift.summarise(pictures), whole)


def test_histogram_bins_and_ends() -> None:
    edges = (0, 1, 10, 20)
    values = np.array([-5, 0, 0.5, 1, 9.99, 10, 19, 20, 500])
    # [0,1): -5 (below: first bin), 0, 0.5; [1,10): 1, 9.99; [10,20]: 10, 19, 20 and 500
    assert drift.histogram(values, edges).tolist() == [3, 2, 4]
    assert drift.histogram(np.array([]), edges).tolist() == [0, 0, 0]


def test_psi_by_hand() -> None:
    assert drift.psi([5, 5], [5, 5]) == 0.0
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(
        (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)
    )
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(drift.psi([90, 10], [50, 50]))
    # an empty bin counts as FLOOR: finite, and large when the other side is not empty
    floored = (drift.FLOOR - 0.5) * math.log(drift.FLOOR / 0.5) + (1 - 0.5) * math.log(1 / 0.5)
    assert drift.psi([0, 10], [5, 5]) == pytest.approx(floored)
    assert drift.psi([0, 10], [0, 7]) == 0.0  # empty on both sides: nothing moved


def reference(counts: list[int]) -> ReferenceProfile:
    """A profile whose every summary has these counts over bins 0..len."""
    edges = [float(i) for i in range(len(counts) + 1)]
    histogram = {"edges": edges, "counts": counts}
    return ReferenceProfile.model_validate(
        {
            "source": "training",
            "computed_at": datetime(2024, 1, 1, tzinfo=UTC),
            "inputs": sum(counts),
            "answers": sum(counts),
            **dict.fromkeys(SUMMARIES, histogram),
        }
    )


def window(*columns: list[float]) -> np.ndarray:
    """A window whose every summary takes these values, one column per summary."""
    return np.tile(np.array(columns, dtype=np.float64).reshape(-1, 1), (1, len(SUMMARIES)))


def test_report_needs_min_samples_to_say_drifted() -> None:
    profile = reference([50, 50])
    values = window([0.5] * 30 + [1.5] * 70)  # 30/70 against 50/50
    expected = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)
    model_id = uuid.uuid4()
    low = drift.report(model_id, profile, values, None, threshold=0.05, min_samples=200)
    assert low.window == 100 and low.psi["ink_mass"] == pytest.approx(expected, abs=1e-6)
    assert set(low.moved) == set(SUMMARIES) and not low.drifted  # moved, too few to say
    enough = drift.report(model_id, profile, values, None, threshold=0.05, min_samples=100)
    assert enough.drifted
    calm = drift.report(model_id, profile, values, None, threshold=0.2, min_samples=100)
    assert calm.moved == [] and not calm.drifted
    assert calm.histograms["top_probability"].reference == [0.5, 0.5]
    assert calm.histograms["top_probability"].served == [0.3, 0.7]


def test_report_names_the_summaries_that_moved_largest_first() -> None:
    profile = reference([50, 50])
    values = window([0.5] * 50 + [1.5] * 50)
    values[:, SUMMARIES.index("stroke_intensity")] = 1.5  # all in one bin: the largest PSI
    values[:, SUMMARIES.index("centroid_offset")] = [0.5] * 90 + [1.5] * 10  # 90/10: smaller
    report = drift.report(uuid.uuid4(), profile, values, None, threshold=0.2, min_samples=10)
    assert report.moved == ["stroke_intensity", "centroid_offset"]
    assert report.psi["ink_mass"] == 0.0 and report.drifted


def test_an_empty_window_has_no_psi() -> None:
    report = drift.report(uuid.uuid4(), reference([1, 1]), window(), None, 0.2, 1)
    assert report.window == 0 and set(report.psi) == set(SUMMARIES)
    assert all(value is None for value in report.psi.values())
    assert not report.drifted and report.moved == [] and report.since is None
    assert report.histograms["ink_mass"].served == [0.0, 0.0]


def test_reference_profile_counts_its_training_and_test_images() -> None:
    rng = np.random.default_rng(5)
    train = rng.integers(0, 256, size=(30, 784)).astype(np.uint8)
    test = rng.integers(0, 256, size=(12, 784)).astype(np.uint8)
    weights = model_files.weights()
    now = datetime(2024, 5, 1, tzinfo=UTC)
    profile = drift.reference_profile(train, test, weights, 1 / 255, source="training", now=now)
    assert (profile.inputs, profile.answers, profile.computed_at) == (30, 12, now)
    for name, histogram in profile.histograms().items():
        assert histogram.edges == list(drift.EDGES[name])
        assert sum(histogram.counts) == (30 if name in INPUT_SUMMARIES else 12)
    predicted = drift.probabilities(weights, test, 1 / 255).argmax(axis=1)
    assert profile.predicted_class.counts == np.bincount(predicted, minlength=10).tolist()


def test_a_profile_travels_in_the_model_file_and_old_files_still_read() -> None:
    weights = model_files.weights()
    meta = model_files.meta()
    assert meta.reference_profile is None  # an older model's metadata
    payload = encode(weights, meta)
    assert parse_model(payload)[1].reference_profile is None
    profile = reference([3, 4])
    with_profile = meta.model_copy(update={"reference_profile": profile})
    assert parse_model(encode(weights, with_profile))[1].reference_profile == profile
    old = meta.model_dump(mode="json")
    old.pop("reference_profile")
    assert ModelMeta.model_validate(old).reference_profile is None


@pytest.mark.parametrize(
    "histogram",
    [
        {"edges": [0, 1], "counts": [1, 2]},  # one count too many
        {"edges": [0, 2, 1], "counts": [1, 2]},  # edges not increasing
        {"edges": [0, 1], "counts": [-1]},
    ],
)
def test_a_histogram_that_does_not_add_up_is_refused(histogram: dict) -> None:
    with pytest.raises(ValueError):
        ReferenceProfile.model_validate({**reference([1]).model_dump(), "ink_mass": histogram})
