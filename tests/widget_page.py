"""A static page that renders one of the workbench's anywidget ES modules, exactly as shipped, over a
small fake anywidget model, for the browser tests of the widgets' JavaScript.

    write_widget_page(folder / "index.html", "synced_player.js", state, audio={"audio_a": wav})

The page exposes `window.state` (the model's traits), `window.model` (to set traits as Python would),
`window.saved` (how many times the widget sent its changes) and `window.ready` once rendered. Audio
traits travel as base64 and arrive as DataViews, as anywidget hands bytes to a widget.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

PAGE = """<!doctype html><html><body style="margin:0;background:white">
<div id="el" style="width:800px"></div>
<script type="module">
import widget from "./%(js)s";
const bytes = (b64) => { const raw = atob(b64); const a = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) a[i] = raw.charCodeAt(i); return new DataView(a.buffer); };
const state = %(state)s;
for (const [key, b64] of Object.entries(%(audio)s)) state[key] = bytes(b64);
const handlers = {};
window.saved = 0;
const model = {
  get: (k) => state[k],
  set: (k, v) => { const old = state[k]; state[k] = v; if (old !== v) (handlers["change:" + k] || []).forEach((f) => f()); },
  on: (event, f) => { (handlers[event] = handlers[event] || []).push(f); },
  save_changes: () => { window.saved += 1; },
};
window.state = state;
window.model = model;
widget.render({model, el: document.getElementById("el")});
window.ready = true;
</script></body></html>"""


def write_widget_page(path: Path, js: str, state: dict, audio: dict[str, bytes] | None = None) -> Path:
    """Write the page at `path` for the module `js` (a file beside it) with `state` as the model's
    traits and `audio` ({trait: bytes}) as byte traits."""
    encoded = {key: base64.b64encode(data).decode() for key, data in (audio or {}).items()}
    Path(path).write_text(PAGE % {"js": js, "state": json.dumps(state), "audio": json.dumps(encoded)})
    return Path(path)
