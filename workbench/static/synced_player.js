// Synced player for acestep-workbench: play/pause, a playhead over the spectrogram, click to seek,
// the current lyric line highlighted, and an A/B switch that keeps the position. Audio arrives as
// binary WAV buffers (traits audio_a / audio_b) when it is first played: the player asks Python
// for a side's audio ({event: "load", side}) so the widget state holds no audio nobody listens to.
// Lyrics come as [[seconds, text], ...] per take; sections as [{name, start, end, estimated}, ...] per
// take, drawn as bands with their names in a strip above the picture (the one playing highlighted,
// and named in the bar); a click on a name plays that section, to `stop_at`. Syncs `position`
// (throttled), `playing` and `current` back to Python. No external imports.
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "acestep-synced-player";
  root.style.font = "13px sans-serif";
  const bar = document.createElement("div");
  bar.style.display = "flex";
  bar.style.gap = "6px";
  bar.style.alignItems = "center";
  bar.style.marginBottom = "4px";
  const button = (label, title) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    b.style.padding = "2px 10px";
    return b;
  };
  const play = button("▶ Play", "play / pause (space)");
  play.className = "play";
  const sideA = button("A", "listen to take A at the same position");
  sideA.className = "side-a";
  const sideB = button("B", "listen to take B at the same position");
  sideB.className = "side-b";
  const clock = document.createElement("span");
  clock.className = "clock";
  clock.style.fontVariantNumeric = "tabular-nums";
  const label = document.createElement("span");
  label.className = "label";
  label.style.color = "#555";
  const sectionNow = document.createElement("span");
  sectionNow.className = "section-now";
  Object.assign(sectionNow.style, { fontWeight: "bold", padding: "0 6px", borderRadius: "3px" });
  bar.append(play, sideA, sideB, clock, sectionNow, label);
  const strip = document.createElement("div");
  strip.className = "section-strip";
  Object.assign(strip.style, { position: "relative", height: "18px", font: "11px sans-serif" });
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  const wrap = document.createElement("div");
  wrap.style.position = "relative";
  const img = document.createElement("img");
  img.style.width = "100%";
  img.style.display = "block";
  const layer = document.createElement("canvas");
  layer.className = "playhead";
  Object.assign(layer.style, { position: "absolute", left: "0", top: "0", width: "100%", height: "100%",
                               cursor: "pointer" });
  wrap.append(img, layer);

  const lyrics = document.createElement("div");
  lyrics.className = "lyrics";
  Object.assign(lyrics.style, { maxHeight: "9em", overflowY: "auto", marginTop: "4px", lineHeight: "1.5em" });
  root.append(bar, strip, wrap, lyrics);
  el.append(root);

  const players = { a: new Audio(), b: new Audio() };
  const urls = { a: null, b: null };
  for (const side of ["a", "b"]) players[side].preload = "auto";
  const has = (which) => Boolean(model.get("label_" + which));  // a take is loaded on that side
  // The side shown here: the switch compares against it, never against the model's `current`,
  // which Python may already have set when the change reaches us.
  let shown = model.get("current") === "b" && has("b") ? "b" : "a";
  const side = () => shown;
  const audio = () => players[side()];
  let pendingPlay = false;  // Play was pressed before the side's audio arrived
  const pendingSeek = { a: null, b: null };
  const requested = { a: false, b: false };
  const ensureAudio = (which) => {
    if (urls[which] || requested[which] || !has(which)) return Boolean(urls[which]);
    requested[which] = true;
    if (model.send) model.send({ event: "load", side: which });
    return false;
  };
  const duration = () => model.get("duration_" + side()) || 1;
  const lines = () => model.get("lines_" + side()) || [];
  const sections = () => model.get("sections_" + side()) || [];

  const syncButton = () => { play.textContent = audio().paused ? "▶ Play" : "❚❚ Pause"; };
  const loadAudio = (which) => {
    const data = model.get("audio_" + which);
    if (urls[which]) URL.revokeObjectURL(urls[which]);
    urls[which] = null;
    requested[which] = false;
    if (data && data.byteLength) {
      const bytes = data.buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
      urls[which] = URL.createObjectURL(new Blob([bytes], { type: model.get("mime") || "audio/wav" }));
      players[which].src = urls[which];
      if (pendingSeek[which] !== null) players[which].currentTime = pendingSeek[which];
      pendingSeek[which] = null;
      if (pendingPlay && which === side()) { pendingPlay = false; setPlaying(true); }
    } else {
      players[which].removeAttribute("src");
    }
    sideB.disabled = !has("b");
    syncButton();
  };

  const toX = (t, width) => {
    const left = model.get("plot_left"), right = model.get("plot_right");
    return (left + Math.min(Math.max(t / duration(), 0), 1) * (right - left)) * width;
  };
  const fmt = (t) => `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}.${Math.floor((t % 1) * 10)}`;
  let shownLine = -2, shownSection = -2;
  const renderSections = () => {
    const left = model.get("plot_left"), right = model.get("plot_right");
    const percent = (t) => 100 * (left + (Math.min(Math.max(t, 0), duration()) / duration()) * (right - left));
    strip.replaceChildren(...sections().map((section, i) => {
      const band = document.createElement("div");
      band.className = "section-band";
      band.dataset.name = section.name;
      band.textContent = section.name;
      band.title = `${section.name}: ${fmt(section.start)}-${fmt(section.end)}` +
        (section.estimated ? " (estimated)" : "") + ": click to play it";
      Object.assign(band.style, {
        position: "absolute", top: "0", height: "16px", left: `${percent(section.start)}%`,
        width: `${percent(section.end) - percent(section.start)}%`, overflow: "hidden", whiteSpace: "nowrap",
        textAlign: "center", color: "white", background: colours[i % colours.length], cursor: "pointer",
        boxSizing: "border-box", borderLeft: "1px solid white", opacity: "0.75",
      });
      band.addEventListener("click", () => playSection(section));
      return band;
    }));
    shownSection = -2;
  };
  const sectionAt = (t) => {
    let index = -1;
    sections().forEach(({ start, end }, i) => { if (start <= t + 1e-3 && t < end) index = i; });
    return index;
  };
  const renderLyrics = () => {
    lyrics.replaceChildren(...lines().map(([t, text], i) => {
      const row = document.createElement("div");
      row.className = "line";
      row.dataset.index = String(i);
      row.textContent = text;
      row.title = fmt(t);
      row.style.padding = "0 4px";
      row.style.cursor = "pointer";
      row.addEventListener("click", () => seek(t));
      return row;
    }));
    shownLine = -2;
  };
  const lineAt = (t) => {
    let index = -1;
    lines().forEach(([start], i) => { if (start <= t + 1e-3) index = i; });
    return index;
  };
  const now = () => (urls[side()] ? audio().currentTime || 0 : pendingSeek[side()] || 0);
  const draw = () => {
    const t = now();
    layer.width = layer.clientWidth;
    layer.height = layer.clientHeight;
    const ctx = layer.getContext("2d");
    ctx.clearRect(0, 0, layer.width, layer.height);
    const playingSection = sectionAt(t);
    // tinted over the plot only: the time axis below stays readable
    const top = (1 - (model.get("plot_top") ?? 1)) * layer.height;
    const bottom = (1 - (model.get("plot_bottom") ?? 0)) * layer.height;
    sections().forEach((section, i) => {
      const a = toX(section.start, layer.width), b = toX(section.end, layer.width);
      ctx.globalAlpha = i === playingSection ? 0.28 : 0.12;
      ctx.fillStyle = colours[i % colours.length];
      ctx.fillRect(a, top, b - a, bottom - top);
      ctx.globalAlpha = 1;
    });
    const x = toX(t, layer.width);
    ctx.strokeStyle = "rgba(0, 200, 255, 0.95)";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, layer.height);
    ctx.stroke();
    layer.dataset.x = String(x);
    clock.textContent = `${fmt(t)} / ${fmt(duration())}`;
    if (playingSection !== shownSection) {
      strip.querySelectorAll(".section-band").forEach((band, i) => {
        const active = i === playingSection;
        band.classList.toggle("active", active);
        band.style.opacity = active ? "1" : "0.75";
        band.style.fontWeight = active ? "bold" : "";
        band.style.outline = active ? "2px solid #ffe08a" : "";
      });
      const current = sections()[playingSection];
      sectionNow.textContent = current ? current.name : "";
      sectionNow.style.background = current ? "#ffe08a" : "";
      shownSection = playingSection;
    }
    const stopAt = model.get("stop_at");
    if (stopAt >= 0 && t >= stopAt && !audio().paused) {  // the end of the section being played
      model.set("stop_at", -1);
      model.save_changes();
      setPlaying(false);
    }
    const index = lineAt(t);
    if (index !== shownLine) {
      lyrics.querySelectorAll(".line").forEach((row, i) => {
        const active = i === index;
        row.classList.toggle("active", active);
        row.style.background = active ? "#ffe08a" : "";
        row.style.fontWeight = active ? "bold" : "";
        if (active && row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
      });
      shownLine = index;
    }
  };

  let lastSent = 0;
  const sendPosition = (force) => {
    const stamp = performance.now();
    if (!force && stamp - lastSent < 250) return;
    lastSent = stamp;
    model.set("position", now());
    model.save_changes();
  };
  let frame = null;
  const tick = () => {
    draw();
    sendPosition(false);
    frame = audio().paused ? null : requestAnimationFrame(tick);
  };
  const seek = (t) => {
    const at = Math.min(Math.max(t, 0), duration());
    if (urls[side()]) audio().currentTime = at; else pendingSeek[side()] = at;
    draw();
    sendPosition(true);
  };
  const playSection = (section) => {
    seek(section.start);
    model.set("stop_at", section.end);
    model.save_changes();
    setPlaying(true);
  };
  const setPlaying = (on) => {
    const a = audio();
    if (on && !ensureAudio(side())) { pendingPlay = true; play.textContent = "… loading"; return; }
    if (!on && pendingPlay) { pendingPlay = false; syncButton(); }
    if (on && a.paused) {
      const started = a.play();
      if (started && started.catch) started.catch(() => {});
    } else if (!on && !a.paused) {
      a.pause();
    }
  };
  for (const which of ["a", "b"]) {
    players[which].addEventListener("play", () => {
      if (which !== side()) return;
      play.textContent = "❚❚ Pause";
      if (model.get("playing") !== true) { model.set("playing", true); model.save_changes(); }
      if (!frame) frame = requestAnimationFrame(tick);
    });
    players[which].addEventListener("pause", () => {
      if (which !== side()) return;
      play.textContent = "▶ Play";
      draw();
      sendPosition(true);
      if (model.get("playing") !== false && !switching) { model.set("playing", false); model.save_changes(); }
    });
    players[which].addEventListener("ended", () => { play.textContent = "▶ Play"; });
  }
  play.addEventListener("click", () => setPlaying(pendingPlay ? false : audio().paused));

  let switching = false;
  const switchTo = (which) => {
    if (which === shown || (which === "b" && !has("b"))) return;
    const from = audio(), t = from.currentTime || pendingSeek[shown] || 0;
    const wasPlaying = !from.paused || pendingPlay;
    switching = true;
    from.pause();
    pendingPlay = false;
    shown = which;
    if (model.get("current") !== which) { model.set("current", which); model.save_changes(); }
    showSide();
    const at = Math.min(t, duration());
    if (urls[which]) audio().currentTime = at; else pendingSeek[which] = at;
    switching = false;
    if (wasPlaying) setPlaying(true);
    syncButton();
    draw();
  };
  sideA.addEventListener("click", () => switchTo("a"));
  sideB.addEventListener("click", () => switchTo("b"));

  const showSide = () => {
    const s = side();
    img.src = model.get("image_" + s) || "";
    label.textContent = model.get("label_" + s) || "";
    sideA.style.fontWeight = s === "a" ? "bold" : "";
    sideB.style.fontWeight = s === "b" ? "bold" : "";
    sideA.style.background = s === "a" ? "#cde" : "";
    sideB.style.background = s === "b" ? "#cde" : "";
    renderLyrics();
    renderSections();
    draw();
  };

  layer.addEventListener("click", (event) => {
    const box = layer.getBoundingClientRect();
    const left = model.get("plot_left"), right = model.get("plot_right");
    const frac = ((event.clientX - box.left) / box.width - left) / (right - left);
    seek(Math.min(Math.max(frac, 0), 1) * duration());
  });

  model.on("change:position", () => {
    const t = model.get("position");
    if (!urls[side()]) { pendingSeek[side()] = t; draw(); return; }
    if (Math.abs((audio().currentTime || 0) - t) > 0.05) { audio().currentTime = t; draw(); }
  });
  model.on("change:playing", () => setPlaying(model.get("playing")));
  model.on("change:current", () => switchTo(model.get("current") === "b" ? "b" : "a"));
  model.on("change:audio_a", () => { loadAudio("a"); showSide(); });
  model.on("change:audio_b", () => { loadAudio("b"); showSide(); });
  for (const name of ["image_a", "image_b", "lines_a", "lines_b", "sections_a", "sections_b", "duration_a",
                      "duration_b", "plot_left"]) {
    model.on("change:" + name, showSide);
  }
  for (const which of ["a", "b"]) {
    model.on("change:label_" + which, () => {
      if (which === "b" && !has("b") && shown === "b") switchTo("a");
      sideB.disabled = !has("b");
      showSide();
    });
  }
  img.addEventListener("load", draw);
  loadAudio("a");
  loadAudio("b");
  showSide();
  return () => {
    for (const which of ["a", "b"]) { players[which].pause(); if (urls[which]) URL.revokeObjectURL(urls[which]); }
    if (frame) cancelAnimationFrame(frame);
  };
}
export default { render };
