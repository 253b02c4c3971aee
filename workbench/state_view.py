"""StateView: the engine, take store and planner a panel works with, always read from the shared
state, so a model loaded in one tab is the one every other tab uses."""

from __future__ import annotations


class StateView:
    """Mixin for objects with a `state` (a `WorkbenchState`)."""

    state = None

    @property
    def engine(self):
        return self.state.engine

    @property
    def store(self):
        return self.state.store

    @property
    def planner(self):
        return self.state.planner
