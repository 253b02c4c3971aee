// Region painter for acestep-workbench: drag on the spectrogram to add a region, drag a region's
// edge to move it, double-click a region to remove it. Regions are [start, end] in seconds and
// sync with Python through the `regions` trait. The take's `sections` ({name, start, end, estimated})
// are tinted bands with their names in a strip above the picture: a click on a name makes that
// section the one painted region. No external imports: works offline.
function render({ model, el }) {
  const wrap = document.createElement("div");
  wrap.style.position = "relative";
  wrap.style.userSelect = "none";
  const img = document.createElement("img");
  img.style.width = "100%";
  img.style.display = "block";
  const layer = document.createElement("canvas");
  layer.style.position = "absolute";
  layer.style.left = "0";
  layer.style.top = "0";
  layer.style.width = "100%";
  layer.style.height = "100%";
  layer.style.cursor = "crosshair";
  const strip = document.createElement("div");
  strip.className = "section-strip";
  Object.assign(strip.style, { position: "relative", height: "18px", font: "11px sans-serif" });
  const hint = document.createElement("div");
  hint.style.font = "12px sans-serif";
  hint.style.color = "#555";
  hint.textContent = "Drag to paint a region to repaint; drag an edge to adjust; double-click a region to remove it.";
  wrap.append(img, layer);
  el.append(strip, wrap, hint);
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  let drag = null;
  const seconds = (event) => {
    const box = layer.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - box.left, 0), box.width);
    const left = model.get("plot_left"), right = model.get("plot_right");
    const frac = (x / box.width - left) / (right - left);
    return Math.min(Math.max(frac, 0), 1) * model.get("duration");
  };
  const toX = (t, width) => {
    const left = model.get("plot_left"), right = model.get("plot_right");
    return (left + (t / model.get("duration")) * (right - left)) * width;
  };
  const draw = () => {
    layer.width = layer.clientWidth;
    layer.height = layer.clientHeight;
    const ctx = layer.getContext("2d");
    ctx.clearRect(0, 0, layer.width, layer.height);
    const regions = drag && drag.preview ? model.get("regions").concat([drag.preview]) : model.get("regions");
    // only over the plot area: the time axis and its label below stay readable
    const top = (1 - (model.get("plot_top") ?? 1)) * layer.height;
    const bottom = (1 - (model.get("plot_bottom") ?? 0)) * layer.height;
    (model.get("sections") || []).forEach((section, i) => {
      const a = toX(section.start, layer.width), b = toX(section.end, layer.width);
      ctx.globalAlpha = 0.18;
      ctx.fillStyle = colours[i % colours.length];
      ctx.fillRect(a, top, b - a, bottom - top);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.7)";
      ctx.beginPath();
      ctx.moveTo(a, top);
      ctx.lineTo(a, bottom);
      ctx.stroke();
    });
    for (const [start, end] of regions) {
      const a = toX(Math.min(start, end), layer.width), b = toX(Math.max(start, end), layer.width);
      ctx.fillStyle = "rgba(44, 160, 44, 0.30)";
      ctx.fillRect(a, top, b - a, bottom - top);
      ctx.strokeStyle = "rgba(20, 110, 20, 0.9)";
      ctx.strokeRect(a, top, b - a, bottom - top);
    }
  };
  const hit = (t) => {
    const tolerance = model.get("duration") * 0.01;
    const regions = model.get("regions");
    for (let i = 0; i < regions.length; i++) {
      if (Math.abs(regions[i][0] - t) < tolerance) return { index: i, edge: 0 };
      if (Math.abs(regions[i][1] - t) < tolerance) return { index: i, edge: 1 };
    }
    return null;
  };
  const inside = (t) => model.get("regions").findIndex(([s, e]) => s <= t && t <= e);
  const round = (t) => Math.round(t * 100) / 100;

  layer.addEventListener("mousedown", (event) => {
    const t = seconds(event);
    const edge = hit(t);
    drag = edge ? { edge } : { start: t, preview: [t, t] };
  });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const t = seconds(event);
    if (drag.edge) {
      const regions = model.get("regions").map((r) => r.slice());
      regions[drag.edge.index][drag.edge.edge] = round(t);
      regions[drag.edge.index].sort((a, b) => a - b);
      model.set("regions", regions);
    } else {
      drag.preview = [drag.start, t];
    }
    draw();
  });
  window.addEventListener("mouseup", () => {
    if (!drag) return;
    if (drag.edge) {
      model.save_changes();
    } else {
      const [a, b] = [Math.min(...drag.preview), Math.max(...drag.preview)];
      if (b - a > model.get("duration") * 0.005) {
        model.set("regions", model.get("regions").concat([[round(a), round(b)]]));
        model.save_changes();
      }
    }
    drag = null;
    draw();
  });
  layer.addEventListener("dblclick", (event) => {
    const index = inside(seconds(event));
    if (index >= 0) {
      model.set("regions", model.get("regions").filter((_, i) => i !== index));
      model.save_changes();
    }
  });
  const drawStrip = () => {
    const sections = model.get("sections") || [];
    const left = model.get("plot_left"), right = model.get("plot_right"), duration = model.get("duration") || 1;
    const percent = (t) => 100 * (left + (Math.min(Math.max(t, 0), duration) / duration) * (right - left));
    strip.replaceChildren(...sections.map((section, i) => {
      const band = document.createElement("div");
      band.className = "section-band";
      band.dataset.name = section.name;
      band.textContent = section.name;
      band.title = `${section.name}: ${section.start.toFixed(1)}-${section.end.toFixed(1)} s` +
        (section.estimated ? " (estimated)" : "") + ": click to paint it as the region";
      Object.assign(band.style, {
        position: "absolute", top: "0", height: "16px", left: `${percent(section.start)}%`,
        width: `${percent(section.end) - percent(section.start)}%`, overflow: "hidden", whiteSpace: "nowrap",
        textAlign: "center", color: "white", background: colours[i % colours.length], cursor: "pointer",
        boxSizing: "border-box", borderLeft: "1px solid white", opacity: section.estimated ? "0.7" : "1",
      });
      band.addEventListener("click", () => {
        model.set("regions", [[section.start, section.end]]);
        model.save_changes();
        draw();
      });
      return band;
    }));
    hint.textContent = sections.length
      ? "Click a section's name to paint it; drag to paint a region; drag an edge to adjust; double-click a region to remove it."
      : "Drag to paint a region to repaint; drag an edge to adjust; double-click a region to remove it.";
  };
  const load = () => { img.src = model.get("image"); };
  img.addEventListener("load", draw);
  model.on("change:image", load);
  model.on("change:regions", draw);
  model.on("change:duration", () => { drawStrip(); draw(); });
  model.on("change:sections", () => { drawStrip(); draw(); });
  model.on("change:plot_left", drawStrip);
  load();
  drawStrip();
}
export default { render };
