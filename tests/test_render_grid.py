"""The Takes tab's "Renders" grid: a render's takes by job (rows) and seed (cells), sorted by quality
score, picking a cell as the current take, A/B in the synced player, Score behind the planner.

A small render on the tiny checkpoints (two jobs x three seeds, 10 s, one step) is made once and
copied into each test's folder.
"""

import shutil

import pytest

from acestep_engine import Blueprint, TakeStore
from acestep_engine.render import render_names, takes_by_job
from workbench.browser import TakeBrowser
from workbench.render_grid import NO_RENDERS, RenderGrid
from workbench.state import WorkbenchState
from workbench.views import live_widgets

QUICK = {"duration": 10, "steps": 1}
JOBS = [{"caption": "lo-fi piano, rain", "name": "lofi", "seeds": [11, 12, 13], **QUICK},
        {"caption": "city pop, bright synths", "name": "citypop", "seeds": [21, 22, 23], **QUICK}]


@pytest.fixture(scope="module")
def rendered(turbo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("render") / "takes"
    summary = turbo.render_many(JOBS, TakeStore(folder), name="evening")
    assert summary.ok, str(summary)
    return folder


@pytest.fixture
def store(rendered, tmp_path):
    shutil.copytree(rendered, tmp_path / "takes")
    return TakeStore(tmp_path / "takes")


def grid_of(store, planner=None, engine=None):
    state = WorkbenchState(engine=engine, store=store, planner=planner)
    browser = TakeBrowser(store, state=state, use_custom_widget=False)
    return browser, browser.open_renders(), state


def labelled(grid):
    """(job label, seeds) per row, as shown."""
    return [(row.label, [r["seed"] for r in row.takes]) for row in grid.rows]


def seeds_of(store, take_ids):
    return [store.record(take_id)["seed"] for take_id in take_ids]


def give_scores(store, scores: dict[int, float]) -> None:
    """Write quality scores by seed into the sidecars, as Score does."""
    for record in store.list():
        if record["seed"] in scores:
            store.update_notes(record["id"], quality_score={"score": scores[record["seed"]], "caption": None,
                                                            "lyrics": None, "metadata": None})


def test_rows_are_the_jobs_and_cells_the_seeds(store):
    assert render_names(store) == ["evening"]
    browser, grid, _ = grid_of(store)
    assert grid.render.options == (("every render", ""), ("evening", "evening"))
    assert labelled(grid) == [("lofi", [11, 12, 13]), ("citypop", [21, 22, 23])]
    assert grid.take_ids == [row.take_ids for row in takes_by_job(store, "evening")]
    grid.render.value = "evening"
    assert labelled(grid) == [("lofi", [11, 12, 13]), ("citypop", [21, 22, 23])]
    table = grid.grid.value
    assert table.index("lofi") < table.index("citypop") and table.count("<tr>") == 3
    for seed in (11, 12, 13, 21, 22, 23):
        assert f"seed {seed} &middot; 10.0 s" in table
    assert "no score yet" not in table  # no planner: no hint to press a Score that cannot run
    assert "takes by seed" in table and "best score first" not in table
    assert [label for label, _ in grid.job_choice.options] == ["1. lofi", "2. citypop"]


def test_picking_a_cell_makes_it_the_current_take_and_follows_the_current_take(store):
    browser, grid, state = grid_of(store)
    lofi, citypop = grid.take_ids
    grid.job_choice.value = grid.rows[1].job
    assert [label for label, _ in grid.take_choice.options] == ["seed 21", "seed 22", "seed 23"]
    grid.take_choice.value = citypop[1]
    assert state.current_take.id == citypop[1] and state.current_take.seed == 22
    assert browser.selected == citypop[1]  # the list of the Takes tab follows too
    assert f"title='{citypop[1]}' style='border:2px solid" in grid.grid.value
    state.current_take = store.load(lofi[2])  # picked elsewhere (the list, another tab)
    assert grid.job_choice.value == grid.rows[0].job and grid.take_choice.value == lofi[2]
    assert f"title='{lofi[2]}' style='border:2px solid" in grid.grid.value
    assert f"title='{citypop[1]}' style='border:2px solid" not in grid.grid.value


def test_scores_sort_rows_by_best_and_cells_by_score(store):
    browser, grid, state = grid_of(store)
    give_scores(store, {22: 0.9, 21: 0.4, 13: 0.6})
    assert labelled(grid) == [("lofi", [11, 12, 13]), ("citypop", [21, 22, 23])]  # not yet told
    state.store_changed()
    # citypop's best (0.9) beats lofi's (0.6); in a row, scored cells first by score, then seed order
    assert labelled(grid) == [("citypop", [22, 21, 23]), ("lofi", [13, 11, 12])]
    assert "score 0.900" in grid.grid.value and "takes, best score first" in grid.grid.value
    grid.job_choice.value = grid.rows[0].job
    assert [label for label, _ in grid.take_choice.options] == ["seed 22 · 0.900", "seed 21 · 0.400", "seed 23"]
    give_scores(store, {11: 0.95})
    state.store_changed()
    assert labelled(grid) == [("lofi", [11, 13, 12]), ("citypop", [22, 21, 23])]


def test_score_needs_the_planner_and_scores_the_shown_takes(store, turbo, planner):
    browser, grid, state = grid_of(store, engine=turbo)
    assert grid.score_button.disabled and "needs the 5 Hz LM planner" in grid.score_button.tooltip
    grid.score_shown()
    assert "needs the 5 Hz LM planner" in grid.status.value and grid.job is None
    state.set_planner(planner)
    assert not grid.score_button.disabled and "no score yet" in grid.grid.value
    give_scores(store, {11: 0.5, 12: 0.5, 13: 0.5, 21: 0.5})  # two left for the planner: a quick test
    state.store_changed()
    grid.score_button.click()
    assert grid.job.result(timeout=600) == 2
    scores = {r["seed"]: r["notes"]["quality_score"]["score"] for r in store.list()}
    assert set(scores) == {11, 12, 13, 21, 22, 23} and all(0 <= s <= 1 for s in scores.values())
    assert "scored 2 take(s)" in grid.status.value and "no score yet" not in grid.grid.value
    current = state.current_take  # the newest take, scored now: the one in memory knows its score too
    assert current.seed == 23 and current.notes["quality_score"] == store.record(current.id)["notes"]["quality_score"]
    best = max(scores[22], scores[23], 0.5)
    assert [row.label for row in grid.rows] == (["citypop", "lofi"] if best > 0.5 else ["lofi", "citypop"])
    grid.score_shown()
    assert grid.status.value == "every take shown has a score"


def test_a_b_loads_any_two_cells_into_the_synced_player(store):
    browser, grid, state = grid_of(store)
    lofi, citypop = grid.take_ids
    assert grid.take_choice.value == state.current_take.id == citypop[2]  # the newest take is current
    state.current_take = None
    assert grid.take_choice.value is None
    grid.as_a_button.click()
    assert grid.player is None and "pick a take first" in grid.status.value
    grid.job_choice.value = grid.rows[0].job
    grid.take_choice.value = lofi[0]
    grid.as_a_button.click()
    assert grid.player.take.id == lofi[0] and grid.player.compare is None
    grid.job_choice.value = grid.rows[1].job
    grid.take_choice.value = citypop[2]
    grid.as_b_button.click()
    assert (grid.player.take.id, grid.player.compare.id, grid.player.current) == (lofi[0], citypop[2], "b")
    assert f"title='{lofi[0]}'" in grid.grid.value and ">A</b>" in grid.grid.value and ">B</b>" in grid.grid.value
    assert grid.player_box.children == (grid.player.widget,)
    with pytest.raises(ValueError, match="b: no take 'nope' in the store"):
        grid.compare(b="nope")
    browser.select(citypop[2])
    browser.delete()  # B is gone: A plays alone
    assert grid.b_id is None and grid.player.take.id == lofi[0] and grid.player.compare is None
    browser.select(lofi[0])
    browser.delete()  # A is gone: so is the player
    assert grid.a_id is None and grid.player is None and grid.player_box.children == ()


def test_a_store_without_renders_says_so(tmp_path, turbo):
    store = TakeStore(tmp_path / "takes")
    store.save(turbo.generate(Blueprint(caption="not a render", duration=10), seeds=[1], steps=1)[0])
    browser, grid, _ = grid_of(store)
    assert grid.rows == [] and NO_RENDERS in grid.grid.value and grid.render.options == (("every render", ""),)
    assert grid.job_choice.options == () and grid.take_choice.options == ()
    empty = TakeStore(tmp_path / "empty")
    assert RenderGrid(WorkbenchState(store=empty)).rows == [] and render_names(empty) == []


def test_another_renders_takes_appear_when_the_revision_changes(store, turbo):
    browser, grid, state = grid_of(store)
    before = len(live_widgets())
    turbo.render_many([{"caption": "late night jazz", "name": "jazz", "seed": 31, **QUICK}], store, name="later")
    assert [label for label, _ in labelled(grid)] == ["lofi", "citypop"]
    state.store_changed()
    assert render_names(store) == ["evening", "later"]
    assert [value for _, value in grid.render.options] == ["", "evening", "later"]
    assert sorted(label for label, _ in labelled(grid)) == ["citypop", "jazz", "lofi"]
    assert "late night jazz" in grid.grid.value and "seed 31" in grid.grid.value
    assert len(live_widgets()) == before  # a bigger render is more HTML, not more widgets
    grid.render.value = "later"
    assert labelled(grid) == [("jazz", [31])]
    grid.render.value = "evening"
    assert [label for label, _ in labelled(grid)] == ["lofi", "citypop"]


def test_the_workbench_takes_tab_builds_the_grid_when_opened_and_redraws_it_when_shown(store, turbo):
    from workbench.app import TITLES, Workbench

    bench = Workbench(turbo, store)
    try:
        bench.tabs.selected_index = TITLES.index("Takes")
        browser = bench.browser
        assert browser.renders_section.children[0].children == ()  # closed: not built
        grid = browser.open_renders()
        assert browser.renders_section.children[0].children == (grid.widget,) and grid.visible
        lofi, citypop = grid.take_ids
        grid.job_choice.value = grid.rows[0].job
        grid.take_choice.value = lofi[1]
        assert bench.current_take.id == lofi[1] and lofi[1] in bench.look.widget.children[0].value
        grid.compare(a=lofi[1], b=citypop[0])
        assert (grid.player.take.id, grid.player.compare.id) == (lofi[1], citypop[0])

        bench.tabs.selected_index = TITLES.index("Blueprint")  # hidden: no redraw until shown again
        assert not grid.visible
        turbo.render_many([{"caption": "late night jazz", "name": "jazz", "seed": 31, **QUICK}], store, name="later")
        bench.state.store_changed()
        assert "jazz" not in grid.grid.value
        bench.tabs.selected_index = TITLES.index("Takes")
        assert grid.visible and "jazz" in grid.grid.value
        browser.renders_section.selected_index = None  # the section closed: the grid is hidden
        assert not grid.visible
    finally:
        bench.close()


def test_a_summary_that_cannot_be_read_is_named_in_the_grid(store):
    browser, grid, _ = grid_of(store)
    (store.folder / ".renders" / "broken.json").write_text("{not json")
    grid.refresh_button.click()
    assert [value for _, value in grid.render.options] == ["", "broken", "evening"]
    grid.render.value = "broken"
    assert grid.rows == [] and "broken.json is not a render summary" in grid.grid.value
    grid.render.value = "evening"
    assert [label for label, _ in labelled(grid)] == ["lofi", "citypop"] and "not a render summary" not in grid.grid.value
