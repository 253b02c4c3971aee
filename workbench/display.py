"""How a panel shows itself in a notebook: as its top widget, on ipywidgets 8 and on Colab's 7.7.

ipywidgets 8 widgets have `_repr_mimebundle_`; ipywidgets 7 only has `_ipython_display_`, so a
panel that delegated to `widget._repr_mimebundle_` showed an AttributeError and a plain repr there.
"""

from __future__ import annotations


def widget_bundle(widget, **kwargs) -> dict:
    """The display data of `widget`: its own on ipywidgets 8; on 7, the widget-view bundle 7 itself
    publishes from `_ipython_display_`."""
    own = getattr(widget, "_repr_mimebundle_", None)
    if own is not None:
        return own(**kwargs)
    return {"text/plain": repr(widget),
            "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                         "model_id": widget._model_id}}
