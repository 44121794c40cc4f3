// The explorer page: asks the server (methods/explore/server.py) for each view and draws it.
// No framework and no build step: the DOM, fetch, and the JSON the endpoints return.
"use strict";

const state = {
  model: null, image: null, layer: null, layers: [], labels: [], top: [],
  target: null,  // the class explained (index)
  unit: null,    // {layer, channel} when a unit is selected
  views: {}, options: {}, inspecting: false, pending: 0,
  shown: 0, explained: 0,  // counters that let a late answer about an earlier image or selection be dropped
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function showError(message) {
  $("error").textContent = message || "";
}

function busy(delta) {
  state.pending += delta;
  $("busy").hidden = state.pending === 0;
  $("busy").textContent = `working (${state.pending})`;
}

// GET a view; while it runs (202) ask its job again, reporting progress; resolve with its payload.
async function api(path, params = {}, onProgress = null) {
  busy(1);
  try {
    let response = await fetch(`${path}?${new URLSearchParams(params)}`);
    let body = await response.json();
    while (response.status === 202) {
      if (onProgress) onProgress(body);
      response = await fetch(`/api/jobs/${body.job}?wait=1`);
      body = await response.json();
    }
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  } finally {
    busy(-1);
  }
}

// ---- drawing helpers ------------------------------------------------------------------------
function colorbar(bar) {
  const ramp = el("div", {className: "ramp"});
  ramp.style.background = `linear-gradient(to right, ${bar.colours.join(", ")})`;
  return el("div", {className: "colorbar"}, ramp,
    el("div", {className: "ends"}, el("span", {text: fmt(bar.low)}), el("span", {text: fmt(bar.high)})),
    bar.label ? el("div", {className: "label", text: bar.label}) : null);
}

function fmt(x) {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(3);
}

// One panel of a result, as its figure draws it: the picture, the map over it, the colour bar.
function panel(p) {
  const stack = el("div", {className: p.smooth ? "stack smooth" : "stack"});
  if (p.image) stack.append(el("img", {src: p.image, alt: p.title}));
  if (p.values) {
    const map = el("img", {src: p.values, alt: p.title, className: p.image ? "over" : ""});
    if (p.image) map.style.opacity = p.alpha;
    stack.append(map);
  }
  return el("figure", {className: "panel"}, stack, el("figcaption", {text: p.title}),
    p.colorbar ? colorbar(p.colorbar) : null);
}

function filesButton(job) {
  const holder = el("div", {className: "files"});
  const button = el("button", {type: "button", text: "download PNG + JSON", onclick: async () => {
    button.disabled = true;
    try {
      const listing = await api(`/api/files/${job}`);
      holder.replaceChildren(...listing.files.map((f) => el("a", {href: f.url, download: f.name, text: f.name})));
    } catch (error) {
      showError(error.message);
      button.disabled = false;
    }
  }});
  holder.append(button);
  return holder;
}

// A card that runs one view: progress while it runs, then its panels or figures.
async function card(holder, title, path, params, draw) {
  const explained = state.explained;
  const node = el("div", {className: "card", "data-state": "running"}, el("h3", {text: title}));
  const status = el("div", {className: "hint", text: "computing…"});
  node.append(status);
  holder.append(node);
  try {
    const body = await api(path, params, (running) => {
      const p = running.progress;
      status.replaceChildren(`${p ? p.step : "waiting"} · ${running.seconds} s `);
      if (p && p.total) status.append(el("progress", {max: p.total, value: p.count}));
    });
    if (explained !== state.explained) return;
    status.remove();
    draw(node, body);
    node.append(el("div", {className: "hint", text: `${body.seconds} s`}), filesButton(body.job));
    node.dataset.state = "done";
  } catch (error) {
    status.textContent = error.message;
    node.dataset.state = "error";
  }
}

function drawResult(node, body) {
  if (body.subtitle) node.append(el("p", {className: "subtitle", text: body.subtitle}));
  const panels = el("div", {className: "panels"});
  for (const p of body.panels || []) panels.append(panel(p));
  for (const f of body.figures || []) {
    panels.append(el("figure", {className: "figure"}, el("img", {src: f.image, alt: f.title, className: "figure-image"})));
  }
  node.append(panels);
}

// ---- the image and its prediction ---------------------------------------------------------------
async function loadImage() {
  state.shown += 1;
  const shown = state.shown;
  showError("");
  document.querySelectorAll("#samples button").forEach((b) => b.classList.toggle("chosen", b.dataset.image === state.image));
  try {
    const body = await api("/api/predict", {model: state.model, image: state.image});
    if (shown !== state.shown) return;
    $("input").src = body.input;
    $("notes").textContent = body.notes.join(" ");
    state.labels = body.labels;
    state.top = body.top;
    $("labels").replaceChildren(...body.labels.map((name, i) => el("option", {value: name, label: `${i}`})));
    if (JSON.stringify(body.layers) !== JSON.stringify(state.layers)) {
      state.layers = body.layers;
      state.layer = body.layer;
      $("layer").replaceChildren(...body.layers.map((name) => el("option", {value: name, text: name})));
    }
    $("layer").value = state.layer;
    state.target = body.top[0].index;
    state.unit = null;
    drawPrediction();
    showGrid();
    explain();
  } catch (error) {
    showError(error.message);
  }
}

function drawPrediction() {
  $("prediction").replaceChildren(...state.top.map((t) => {
    const bar = el("span", {className: "bar"});
    bar.style.width = `${Math.max(1, 100 * t.probability)}%`;
    return el("li", {className: t.index === state.target && !state.unit ? "chosen" : "",
      title: "explain this class", onclick: () => chooseTarget(t.index)},
    `${t.label} (${t.index}) ${(100 * t.probability).toFixed(1)}%`, bar);
  }));
}

function chooseTarget(index) {
  state.target = index;
  state.unit = null;
  explain();
}

// ---- the activation grid ------------------------------------------------------------------------
async function showGrid() {
  const shown = state.shown;
  const layer = state.layer;
  $("grid-title").textContent = `Activations of ${layer}`;
  try {
    const body = await api("/api/activations", {model: state.model, image: state.image, layer});
    if (shown !== state.shown || layer !== state.layer) return;
    $("grid-title").textContent = `Activations of ${layer}: ${body.shape.join(" × ")}`;
    $("grid-bar").replaceChildren(colorbar(body.colorbar));
    $("grid").dataset.image = state.image;
    if (body.kind === "channels") drawChannels(body);
    else drawUnits(body);
  } catch (error) {
    showError(error.message);
  }
}

function drawChannels(body) {
  const grid = $("grid");
  const width = grid.clientWidth || 600;
  const side = Math.max(20, Math.min(112, Math.floor(width / body.columns) - 3));
  const height = Math.round(side * body.tile[0] / body.tile[1]);
  grid.style.gridTemplateColumns = `repeat(${body.columns}, ${side}px)`;
  const tiles = [];
  for (let c = 0; c < body.channels; c += 1) {
    const tile = el("div", {className: "tile", "data-channel": c, title: `channel ${c}`},
      el("span", {text: `${c}`}));
    tile.style.width = `${side}px`;
    tile.style.height = `${height}px`;
    tile.style.backgroundImage = `url("${body.sprite}")`;
    tile.style.backgroundSize = `${body.columns * side}px auto`;
    tile.style.backgroundPosition = `-${(c % body.columns) * side}px -${Math.floor(c / body.columns) * height}px`;
    if (state.unit && state.unit.layer === body.layer && state.unit.channel === c) tile.classList.add("chosen");
    tile.addEventListener("mouseenter", () => hoverChannel(body, c));
    tile.addEventListener("click", () => chooseUnit(body.layer, c));
    tiles.push(tile);
  }
  grid.replaceChildren(...tiles);
}

function hoverChannel(body, c) {
  $("hover").replaceChildren(
    el("img", {src: `${body.channel_url}${c}.png`, alt: `channel ${c}`}),
    el("p", {text: `${body.layer}, channel ${c}: largest activation ${fmt(body.maxima[c])}`}),
    el("p", {className: "hint", text: "click to select this unit"}));
}

function drawUnits(body) {
  const rows = Math.ceil(body.units / body.columns);
  const scale = Math.max(1, Math.floor(Math.min(480 / body.columns, 480 / rows)));
  const image = el("img", {src: body.sprite, alt: `${body.units} units of ${body.layer}`});
  image.style.width = `${body.columns * scale}px`;
  const marker = el("div", {className: "marker"});
  marker.hidden = true;
  const holder = el("div", {className: "units", title: "one pixel per unit"}, image, marker);
  const unitAt = (event) => {
    const box = image.getBoundingClientRect();
    const col = Math.floor((event.clientX - box.left) / scale);
    const row = Math.floor((event.clientY - box.top) / scale);
    const unit = row * body.columns + col;
    return col >= 0 && col < body.columns && unit >= 0 && unit < body.units ? unit : null;
  };
  const place = (unit) => {
    marker.hidden = unit === null;
    if (unit === null) return;
    Object.assign(marker.style, {left: `${(unit % body.columns) * scale}px`, top: `${Math.floor(unit / body.columns) * scale}px`,
      width: `${scale}px`, height: `${scale}px`});
  };
  if (state.unit && state.unit.layer === body.layer) place(state.unit.channel);
  holder.addEventListener("mousemove", (event) => {
    const unit = unitAt(event);
    if (unit === null) return;
    $("hover").replaceChildren(el("p", {text: `${body.layer}, unit ${unit}: activation ${fmt(body.values[unit])}`}),
      el("p", {className: "hint", text: "click to select this unit"}));
  });
  holder.addEventListener("click", (event) => {
    const unit = unitAt(event);
    if (unit !== null) {
      place(unit);
      chooseUnit(body.layer, unit);
    }
  });
  $("grid").style.gridTemplateColumns = "1fr";
  $("grid").replaceChildren(holder);
}

function chooseUnit(layer, channel) {
  state.unit = {layer, channel};
  document.querySelectorAll("#grid .tile").forEach((t) => t.classList.toggle("chosen", Number(t.dataset.channel) === channel));
  explain();
}

// ---- the maps of the selected class or unit ------------------------------------------------------
function className(index) {
  return `${state.labels[index] || "class"} (${index})`;
}

function explain() {
  state.explained += 1;
  drawPrediction();
  const unit = state.unit;
  $("selection").textContent = unit ? `${unit.layer}, unit ${unit.channel} (class maps: ${className(state.target)})`
    : `the class ${className(state.target)}`;
  $("clear-unit").hidden = !unit;
  $("unit-name").textContent = unit ? `${unit.layer}, unit ${unit.channel}` : "(click a channel)";
  $("patches-button").disabled = !unit;
  $("visualize-button").disabled = !unit || !state.views["visualize-unit"];
  $("target").value = "";
  const common = {model: state.model, image: state.image};
  const followed = unit ? {layer: unit.layer, unit: unit.channel} : {target: state.target};
  const holder = $("maps");
  holder.replaceChildren();
  card(holder, "Saliency (Simonyan et al. 2014)", "/api/run",
    {technique: "saliency", ...common, target: state.target, segment: "false"}, drawResult);
  card(holder, "Deconvnet (Zeiler & Fergus 2014)", "/api/run", {technique: "deconvnet", ...common, ...followed}, drawResult);
  card(holder, "Guided backpropagation (Springenberg et al. 2015)", "/api/run",
    {technique: "guided-backprop", ...common, ...followed}, drawResult);
  card(holder, "Grad-CAM (Selvaraju et al. 2017)", "/api/run",
    {technique: "grad-cam", ...common, target: state.target, guided: "false"}, drawResult);
  $("unit-cards").replaceChildren();
  $("occlusion-cards").replaceChildren();
  if (state.inspecting) inspect();
}

function unitViews(technique, title) {
  const unit = state.unit;
  if (!unit) return;
  const option = technique === "patches" ? {channel: unit.channel} : {unit: unit.channel};
  if ((state.options[technique] || []).includes("restarts")) option.restarts = 1;  // one image, as the toolbox shows
  card($("unit-cards"), `${title}: ${unit.layer}, unit ${unit.channel}`, "/api/run",
    {technique, model: state.model, layer: unit.layer, ...option}, drawResult);
}

// ---- the backprop inspector ----------------------------------------------------------------------
async function inspect() {
  state.inspecting = true;
  const explained = state.explained;
  const unit = state.unit;
  const params = {model: state.model, image: state.image, ...(unit ? {layer: unit.layer, unit: unit.channel} : {target: state.target})};
  const holder = $("inspector");
  holder.replaceChildren(el("p", {className: "hint", text: "computing…"}));
  holder.dataset.state = "running";
  try {
    const body = await api("/api/inspect", params);
    if (explained !== state.explained) return;
    const pairs = Object.keys(body.rows[0].cosine);
    const head = el("tr", {}, el("th", {text: "output of"}), el("th", {text: "shape"}),
      ...body.rules.map((r) => el("th", {text: r})), ...pairs.map((p) => el("th", {text: `cos ${p.replace("/", " / ")}`})));
    const rows = body.rows.map((row) => el("tr", {className: row.name === body.parting ? "parting" : ""},
      el("td", {className: "name", text: row.name + (row.name === body.parting ? "  ← they part here" : "")}),
      el("td", {text: row.shape.join("×")}),
      ...body.rules.map((r) => el("td", {}, el("img", {src: row.maps[r], alt: `${row.name} ${r}`}),
        `‖g‖ ${fmt(row.norms[r])}`)),
      ...pairs.map((p) => {
        const value = row.cosine[p];
        const cell = el("td", {text: value === null ? "–" : value.toFixed(4)});
        if (value !== null) cell.style.background = `hsl(${Math.max(0, value) * 120}, 70%, 85%)`;
        return cell;
      })));
    const at = body.rows.findIndex((row) => row.name === body.parting);
    const summary = at > 0 ? `the three rules give the same gradient down to the output of ${body.rows[at - 1].name} `
      + `and part at the output of ${body.parting}`
      : at === 0 ? `the rules differ from the start (${body.parting})` : "the three rules never part here";
    holder.replaceChildren(
      el("div", {className: "inspector-head"}, el("p", {text: `${body.quantity}: ${summary}.`}),
        el("div", {className: "legend"}, colorbar(body.colorbar))),
      el("table", {className: "inspector"}, head, ...rows), filesButton(body.job));
    holder.dataset.state = "done";
  } catch (error) {
    holder.replaceChildren(el("p", {className: "error", text: error.message}));
    holder.dataset.state = "error";
  }
}

// ---- images ----------------------------------------------------------------------------------
function addSample(image, label) {
  const button = el("button", {type: "button", title: label, "data-image": image, onclick: () => chooseImage(image)},
    el("img", {src: `/api/thumbnail?${new URLSearchParams({image})}`, alt: label}), label);
  $("samples").append(button);
  return button;
}

function chooseImage(image) {
  state.image = image;
  loadImage();
}

async function upload(file) {
  busy(1);
  try {
    const response = await fetch("/api/upload", {method: "POST", body: file});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error);
    addSample(body.image, file.name);
    chooseImage(body.image);
  } catch (error) {
    showError(error.message);
  } finally {
    busy(-1);
  }
}

function chooseTargetByText(text) {
  text = text.trim();
  const index = /^\d+$/.test(text) ? Number(text) : state.labels.findIndex((n) => n.toLowerCase() === text.toLowerCase());
  if (index < 0 || index >= state.labels.length) {
    showError(`no class ${JSON.stringify(text)}: give a class name from the list or an index below ${state.labels.length}`);
    return;
  }
  showError("");
  chooseTarget(index);
}

async function start() {
  try {
    const body = await api("/api/models");
    state.views = body.views;
    state.options = body.options;
    state.model = body.default;
    state.image = body.image;
    $("model").replaceChildren(...body.models.map((name) => el("option", {value: name, text: name})));
    $("model").value = state.model;
    $("visualize-note").textContent = body.views["visualize-unit"] ? ""
      : "(unavailable: the visualize-unit technique is not installed here)";
    const samples = await api("/api/samples");
    for (const s of samples.samples) addSample(s.image, s.label);
  } catch (error) {
    showError(error.message);
    return;
  }
  $("model").addEventListener("change", () => {
    state.model = $("model").value;
    state.layers = [];
    loadImage();
  });
  $("layer").addEventListener("change", () => {
    state.layer = $("layer").value;
    showGrid();
  });
  $("upload").addEventListener("change", () => {
    if ($("upload").files.length) upload($("upload").files[0]);
  });
  $("target").addEventListener("change", () => chooseTargetByText($("target").value));
  $("clear-unit").addEventListener("click", () => chooseTarget(state.target));
  $("patches-button").addEventListener("click", () => unitViews("patches", "Top patches (Girshick et al. 2014)"));
  $("visualize-button").addEventListener("click", () => unitViews("visualize-unit", "Regularized visualization (Yosinski et al. 2015)"));
  $("occlusion-button").addEventListener("click", () => card($("occlusion-cards"), `Occlusion (Zeiler & Fergus 2014): ${className(state.target)}`,
    "/api/run", {technique: "occlusion", model: state.model, image: state.image, target: state.target}, drawResult));
  $("inspect-button").addEventListener("click", inspect);
  loadImage();
}

start();
