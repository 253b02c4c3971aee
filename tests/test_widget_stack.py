"""Colab's kernel stack, tested: `make test` runs the panel tests on the venv's newest ipykernel,
IPython, tornado and ipywidgets 8, and again on Colab's pinned ones (ipykernel 6.17.1, IPython 7.34.0,
tornado, ipywidgets 7.7.1: `make test-colab-stack`, which sets ACESTEP_EXPECT_COLAB_STACK=1); this file
says which stack each run imported and checks that every panel displays as a widget on it, the way a
notebook cell shows it."""

import os

import ipywidgets
import pytest

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_the_panels_run_on_the_kernel_stack_this_run_expects(colab_pins):
    import IPython
    import ipykernel
    import tornado

    imported = {"ipykernel": ipykernel.__version__, "ipython": IPython.__version__, "tornado": tornado.version,
                "ipywidgets": ipywidgets.__version__}
    print("kernel stack:", ", ".join(f"{name} {version}" for name, version in imported.items()),
          "- ipywidgets from", ipywidgets.__file__)
    if os.environ.get("ACESTEP_EXPECT_COLAB_STACK") == "1":
        assert imported == {name: colab_pins[name] for name in imported}
    assert int(ipywidgets.__version__.split(".")[0]) in (7, 8)  # what pyproject allows: >=7.7,<9


def _shown(obj) -> list[dict]:
    """The display data a notebook cell ending in `obj` publishes (through IPython's own display)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        display(obj)
    return [output.data for output in captured.outputs]


@pytest.fixture(scope="module")
def bench(turbo, tmp_path_factory):
    from acestep_engine import Blueprint, TakeStore
    from workbench import Workbench, close_tree

    store = TakeStore(tmp_path_factory.mktemp("stack-takes"))
    wb = Workbench(turbo, store, Blueprint(caption="widget stack", duration=10.0, bpm=120, keyscale="C major",
                                           timesignature=4, language="en"))
    take, = turbo.generate(wb.editor.blueprint, seeds=1, steps=2)
    store.save(take)
    yield wb, take
    close_tree(wb.widget)  # no live players left for the tests that count them


def test_every_panel_displays_as_a_widget(bench):
    from workbench import SpectrogramView, TakeCard

    wb, take = bench
    for obj in (wb, wb.editor, wb.generate_panel, wb.browser, wb.lora_panel, TakeCard(take), SpectrogramView(take)):
        shown = _shown(obj)
        assert len(shown) == 1 and WIDGET_VIEW in shown[0], (type(obj).__name__, shown)
        assert shown[0][WIDGET_VIEW]["model_id"] == obj.widget.model_id
