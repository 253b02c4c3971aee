"""RepaintPainter: regions stay in sync both ways; repaint and extend make linked takes."""

import numpy as np
import pytest

from acestep_engine import Blueprint, TakeStore
from workbench import RepaintPainter
from workbench.painter import SliderRegionCanvas, shaded_regions

BP = Blueprint(caption="dub techno chords", bpm=120, duration=10.0)


@pytest.fixture(scope="module")
def take(turbo):
    take, = turbo.generate(BP, seeds=11)
    return take


@pytest.mark.parametrize("custom", [True, False])
def test_regions_sync_between_canvas_and_boxes(turbo, take, custom):
    painter = RepaintPainter(take, turbo, use_custom_widget=custom)
    assert isinstance(painter.canvas, SliderRegionCanvas) != custom
    if custom:
        assert painter.canvas.image.startswith("data:image/png;base64,")
        assert 0 < painter.canvas.plot_left < painter.canvas.plot_right < 1
        assert "export default" in painter.canvas._esm  # the JavaScript ships in the package
    painter.canvas.regions = [[1.0, 2.5], [6.0, 7.0]]  # as a drag in the browser would set it
    boxes = [(row.children[0].value, row.children[1].value) for row in painter.rows.children]
    assert boxes == [(1.0, 2.5), (6.0, 7.0)]
    painter.rows.children[1].children[0].value = 5.5  # typing in a start box moves the painted region
    assert painter.canvas.regions == [[1.0, 2.5], [5.5, 7.0]]
    painter.rows.children[0].children[2].click()  # Remove
    assert painter.regions == [(5.5, 7.0)] and len(painter.rows.children) == 1
    painter.add_button.click()
    assert len(painter.regions) == 2


def test_fallback_sliders_move_regions(turbo, take):
    painter = RepaintPainter(take, turbo, use_custom_widget=False)
    painter.regions = [(2.0, 3.0)]
    slider = painter.canvas.sliders.children[0]
    slider.value = (4.0, 6.0)
    assert painter.regions == [(4.0, 6.0)]
    assert painter.rows.children[0].children[0].value == 4.0


def test_repaint_button_makes_a_linked_take_and_shows_before_after(turbo, take, tmp_path):
    store = TakeStore(tmp_path)
    store.save(take)
    painter = RepaintPainter(take, turbo, store)
    painter.regions = [(3.0, 5.0), (7.0, 8.0)]
    painter.seed.value = "4"
    painter.repaint_button.click()
    result, = painter.job.result(timeout=120)
    assert result.parent_id == take.id and result.task["name"] == "repaint"
    assert result.task["regions"] == [[3.0, 5.0], [7.0, 8.0]]
    assert store.lineage(result.id) == [take.id, result.id]
    assert painter.comparison.take is take and painter.comparison.compare is result
    assert painter.comparison.regions == [(3.0, 5.0), (7.0, 8.0)] and "A = before" in painter.status.value
    keep = slice(0, int(2.8 * 48000))
    assert np.array_equal(result.audio[:, keep], take.audio[:, keep])
    assert painter.take is result and painter.regions == [(3.0, 5.0), (7.0, 8.0)]  # current, the same bars painted
    assert painter.comparison.compare is result  # ... and the before/after stays
    painter.back_button.click()
    assert painter.take is take and painter.comparison.widget.layout.display == "none"
    assert painter.regions == [(3.0, 5.0), (7.0, 8.0)]  # back on the source, ready for another try
    painter.regions = [(2.0, 3.0)]
    painter.extend_left.value = 1.5
    painter.repaint_button.click()
    longer, = painter.job.result(timeout=120)
    assert painter.take is longer and painter.regions == [(3.5, 4.5)]  # the bars moved with the music
    painter.set_take(result)  # another take: nothing painted on it
    assert painter.regions == []


def test_regions_past_the_end_are_refused_and_shading_follows_what_the_job_did(turbo, take):
    painter = RepaintPainter(take, turbo)
    painter.regions = [(2.0, 3.0), (8.0, 50.0)]
    assert painter.repaint() is None
    assert "region 2 end must be between 0 and 10.00 s" in painter.status.value and "(got 50)" in painter.status.value
    painter.regions = [(2.0, 3.0)]
    painter.extend_left.value = 1.5
    task = painter.build_task()
    before, after = shaded_regions(task, take.duration)
    assert before == [(2.0, 3.0)] and after == [(0.0, 1.5), (3.5, 4.5)]  # the result starts 1.5 s earlier


def test_extend_right_with_context(turbo, take, tmp_path):
    painter = RepaintPainter(take, turbo, TakeStore(tmp_path))
    painter.extend_right.value = 4.0
    painter.context.value = 6.0
    painter.repaint_button.click()
    result, = painter.job.result(timeout=120)
    assert result.task["name"] == "extend" and result.duration == pytest.approx(take.duration + 4.0)


def test_nothing_painted_is_explained(turbo, take):
    painter = RepaintPainter(take, turbo)
    assert painter.repaint() is None and "paint a region" in painter.status.value
    painter.regions = [(5.0, 4.0)]
    painter.repaint_button.click()
    assert "region end must be after its start" in painter.status.value


def test_a_seed_that_is_not_a_number_is_refused_by_name(turbo, take):
    painter = RepaintPainter(take, turbo)
    painter.regions = [(2.0, 4.0)]
    painter.seed.value = "forty-two"
    assert painter.repaint() is None and painter.job is None
    assert "seed must be a whole number &gt;= 0, or empty for a random one" in painter.status.value
    assert "forty-two" in painter.status.value
    painter.seed.value = "-3"
    assert painter.repaint() is None and "(got &#x27;-3&#x27;)" in painter.status.value
