// cnnkit explore: the page. Every number comes from the local server's JSON routes
// (cnnkit/explore/server.py); nothing is fetched from anywhere else.
"use strict";

const TILES_PER_COLUMN = 6;
const state = {
  summary: null,
  run: null,
  layer: null,
  channel: 0,
  values: null,
  cell: null,
  explainClass: null,
  followTop: true,
  testIndex: 0,
  epoch: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.cls) node.className = options.cls;
  if (options.text !== undefined) node.textContent = options.text;
  if (options.title) node.title = options.title;
  for (const [key, value] of Object.entries(options.data || {})) node.dataset[key] = value;
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

function report(error) {
  showMessage(error.message || String(error));
}

function fmt(value, digits = 4) {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e5) return String(Number(value.toPrecision(digits)));
  return value.toExponential(digits - 1);
}

function colour(value, scale) {
  const t = Math.max(-1, Math.min(1, scale > 0 ? value / scale : 0));
  const fade = Math.round(255 * (1 - Math.abs(t)));
  return t < 0 ? `rgb(${fade},${fade},255)` : `rgb(255,${fade},${fade})`;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("cannot draw a feature map"));
    image.src = url;
  });
}

// ---------------------------------------------------------------------------------------------
// The model summary, the input and the probabilities
// ---------------------------------------------------------------------------------------------

async function start() {
  const summary = await api("/api/model");
  state.summary = summary;
  state.epoch = summary.epoch;
  $("model-name").textContent = `${summary.model}, ${summary.parameters.toLocaleString()} parameters`;
  $("model-origin").textContent =
    `${summary.origin}; input ${summary.input_shape.join(" x ")}` +
    (summary.dataset ? `; data set ${summary.dataset}` : "");
  for (const note of summary.notes) $("input-label").after(el("p", { cls: "note", text: note }));
  const classes = $("explain-class");
  summary.classes.forEach((name, index) => {
    const option = el("option", { text: `${index}: ${name}` });
    option.value = index;
    classes.append(option);
  });
  for (const name of summary.map_layers) {
    const option = el("option", { text: name });
    option.value = name;
    if (name === summary.grad_cam_layer) option.selected = true;
    $("cam-layer").append(option);
  }
  $("test-controls").hidden = summary.test_count === 0;
  $("test-index").max = Math.max(0, summary.test_count - 1);
  $("test-count").textContent = `of ${summary.test_count}`;
  $("draw-panel").hidden = !summary.drawing;
  if (summary.drawing) setUpDrawing();
  if (summary.run) pollCurves();
  if (summary.test_count > 0) await runTest(0);
  else await runBlank();
}

async function runTest(index) {
  const count = state.summary.test_count;
  state.testIndex = ((index % count) + count) % count;
  $("test-index").value = state.testIndex;
  show(await api(`/api/run?index=${state.testIndex}`));
}

async function runBlank() {
  const [c, h, w] = state.summary.input_shape;
  const canvas = el("canvas");
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d");
  context.fillStyle = c === 1 ? "black" : "gray";
  context.fillRect(0, 0, w, h);
  await postImage(await canvasBlob(canvas), "drawing");
}

function canvasBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function postImage(blob, source) {
  const type = blob.type === "image/jpeg" ? "image/jpeg" : "image/png";
  show(
    await api(`/api/run?source=${source}`, {
      method: "POST",
      headers: { "Content-Type": type },
      body: blob,
    }),
  );
}

function show(run) {
  showMessage("");
  state.run = run;
  for (const id of ["input-image", "saliency-base", "cam-base"]) $(id).src = run.input_png;
  $("input-label").textContent = run.label;
  showProbabilities(run);
  drawNetwork(run);
  if (state.explainClass === null || state.followTop) {
    state.explainClass = run.top;
    state.followTop = true;
  }
  $("explain-class").value = state.explainClass;
  explain();
  if (state.layer) openLayer(state.layer, state.channel, false);
}

function showProbabilities(run) {
  const box = $("probabilities");
  box.replaceChildren();
  const order = run.probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  const shown = order.slice(0, 10).sort((a, b) => a[1] - b[1]);
  for (const [p, index] of shown) {
    const bar = el("div", { cls: "bar" });
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    const row = el("div", { cls: index === run.top ? "prob best" : "prob", data: { cls: index } }, [
      el("span", { cls: "prob-name", text: state.summary.classes[index] }),
      el("span", { cls: "prob-track" }, [bar]),
      el("span", { cls: "prob-value", text: p.toFixed(3) }),
    ]);
    row.title = `class ${index}: p = ${p}`;
    row.addEventListener("click", () => {
      state.explainClass = index;
      state.followTop = false;
      $("explain-class").value = index;
      explain();
    });
    box.append(row);
  }
  if (run.probabilities.length > 10) {
    box.append(el("p", { cls: "muted", text: `top 10 of ${run.probabilities.length} classes` }));
  }
  $("top-class").textContent = run.top_name;
  $("top-class").dataset.index = run.top;
  $("top-probability").textContent = `p = ${run.probabilities[run.top].toFixed(3)}`;
}

async function explain() {
  const layer = $("cam-layer").value;
  const query = `image=${encodeURIComponent(state.run.image)}&class=${state.explainClass}` +
    `&layer=${encodeURIComponent(layer)}`;
  try {
    const result = await api(`/api/explain?${query}`);
    $("saliency").src = result.saliency.png;
    $("grad-cam").src = result.grad_cam.png;
    $("grad-cam").title = `Grad-CAM at ${result.grad_cam.layer} (${result.grad_cam.shape.join(" x ")})`;
  } catch (error) {
    report(error);
  }
}

// ---------------------------------------------------------------------------------------------
// The layers, left to right
// ---------------------------------------------------------------------------------------------

function drawTile(canvas, image, entry, channel) {
  const [h, w] = entry.tile;
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(image, channel * w, 0, w, h, 0, 0, w, h);
  canvas.dataset.drawn = "1";
}

async function drawNetwork(run) {
  const network = $("network");
  network.replaceChildren();
  const input = el("div", { cls: "layer input-layer", data: { layer: "input" } }, [
    el("div", { cls: "layer-name", text: "input" }),
    el("div", { cls: "layer-type", text: state.summary.input_shape.join(" x ") }),
  ]);
  const picture = el("img", { cls: "tile" });
  picture.src = run.input_png;
  input.append(picture);
  network.append(input);
  let group = null;
  for (const entry of run.layers) {
    const dot = entry.name.indexOf(".");
    const prefix = dot > 0 ? entry.name.slice(0, dot) : null;
    if (prefix === null) group = null;
    else if (!group || group.dataset.group !== prefix) {
      const layers = el("div", { cls: "group-layers" });
      group = el("div", { cls: "group", data: { group: prefix } }, [
        el("div", { cls: "group-name", text: prefix }),
        layers,
      ]);
      network.append(group);
    }
    const column = el("div", { cls: "layer", data: { layer: entry.name, kind: entry.kind } });
    const info = state.summary.layers.find((layer) => layer.name === entry.name) || {};
    if (info.conv) column.classList.add("conv");
    const short = prefix === null ? entry.name : entry.name.slice(dot + 1);
    column.append(
      el("div", { cls: "layer-name", text: short, title: entry.name }),
      el("div", { cls: "layer-type", text: entry.type }),
      el("div", { cls: "layer-shape", text: entry.shape.join(" x ") }),
    );
    (group ? group.lastChild : network).append(column);
    if (!entry.png) continue;
    const image = await loadImage(entry.png);
    if (entry.kind === "vector") {
      const canvas = el("canvas", { cls: "vector", title: `${entry.shape[0]} values` });
      canvas.width = 1;
      canvas.height = entry.shown;
      canvas.getContext("2d").drawImage(image, 0, 0);
      canvas.dataset.drawn = "1";
      column.append(canvas);
      continue;
    }
    const count = Math.min(TILES_PER_COLUMN, entry.shown);
    for (let channel = 0; channel < count; channel++) {
      const canvas = el("canvas", { cls: "tile", title: `${entry.name} channel ${channel}` });
      drawTile(canvas, image, entry, channel);
      canvas.addEventListener("click", () => openLayer(entry.name, channel, true));
      column.append(canvas);
    }
    const more = entry.shape[0] - count;
    const button = el("button", {
      cls: "more",
      text: more > 0 ? `+${more} more` : "open",
      title: "all channels of this layer",
    });
    button.type = "button";
    button.addEventListener("click", () => openLayer(entry.name, 0, true));
    column.append(button);
  }
}

// ---------------------------------------------------------------------------------------------
// One layer: its channels, one channel's values, its filters
// ---------------------------------------------------------------------------------------------

function openLayer(name, channel, scroll) {
  showLayer(name, channel, scroll).catch(report);
}

async function showLayer(name, channel, scroll) {
  const overview = state.run.layers.find((layer) => layer.name === name);
  if (!overview || overview.kind !== "maps") return;
  const query = `image=${encodeURIComponent(state.run.image)}&layer=${encodeURIComponent(name)}`;
  const entry = await api(`/api/layer?${query}`);
  state.layer = name;
  state.channel = Math.min(channel, entry.shape[0] - 1);
  const info = state.summary.layers.find((layer) => layer.name === name);
  $("detail-panel").hidden = false;
  $("detail-title").textContent = `${name} (${entry.type}), output ${entry.shape.join(" x ")}`;
  $("detail-info").textContent =
    `values ${fmt(entry.min)} .. ${fmt(entry.max)}` +
    (entry.shown < entry.shape[0] ? `; the first ${entry.shown} channels shown here` : "") +
    (info.conv ? "; click a value to see its equation" : "");
  const image = await loadImage(entry.png);
  const maps = $("detail-maps");
  maps.replaceChildren();
  for (let c = 0; c < entry.shown; c++) {
    const canvas = el("canvas", { cls: c === state.channel ? "tile chosen" : "tile" });
    canvas.title = `channel ${c}`;
    drawTile(canvas, image, entry, c);
    canvas.addEventListener("click", () => openLayer(name, c, false));
    maps.append(canvas);
  }
  $("show-filters").hidden = !info.conv;
  $("filters").replaceChildren();
  await showChannel(name, state.channel);
  if (scroll) $("detail-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function showChannel(name, channel) {
  const query = `image=${encodeURIComponent(state.run.image)}&layer=${encodeURIComponent(name)}` +
    `&channel=${channel}`;
  const result = await api(`/api/map?${query}`);
  state.values = result;
  drawChannel();
}

function cellSize() {
  const rows = state.values.values.length;
  const cols = state.values.values[0].length;
  return Math.max(3, Math.min(36, Math.floor(360 / Math.max(rows, cols))));
}

function drawChannel() {
  const { values, scale } = state.values;
  const size = cellSize();
  const canvas = $("channel-canvas");
  canvas.width = values[0].length * size;
  canvas.height = values.length * size;
  const context = canvas.getContext("2d");
  values.forEach((row, y) =>
    row.forEach((value, x) => {
      context.fillStyle = colour(value, scale);
      context.fillRect(x * size, y * size, size, size);
    }),
  );
  if (size >= 8) {
    context.strokeStyle = "rgba(0,0,0,0.12)";
    for (let i = 0; i <= values.length; i++) context.strokeRect(0, i * size, canvas.width, 0);
    for (let i = 0; i <= values[0].length; i++) context.strokeRect(i * size, 0, 0, canvas.height);
  }
  if (state.cell && state.cell.layer === state.values.layer) {
    context.strokeStyle = "black";
    context.lineWidth = 2;
    context.strokeRect(state.cell.x * size + 1, state.cell.y * size + 1, size - 2, size - 2);
  }
  canvas.dataset.layer = state.values.layer;
  canvas.dataset.channel = state.values.channel;
}

function cellAt(event) {
  const canvas = $("channel-canvas");
  const box = canvas.getBoundingClientRect();
  const size = cellSize() * (box.width / canvas.width);
  const x = Math.floor((event.clientX - box.left) / size);
  const y = Math.floor((event.clientY - box.top) / size);
  const values = state.values.values;
  if (y < 0 || y >= values.length || x < 0 || x >= values[0].length) return null;
  return { x, y, value: values[y][x] };
}

async function showFilters() {
  try {
    const result = await api(`/api/filters?layer=${encodeURIComponent(state.layer)}`);
    const picture = el("img", { cls: "filters", title: result.title });
    picture.src = result.png;
    picture.style.width = `${Math.min(640, result.shown[1] * 24)}px`;
    const more = result.shown[0] < result.shape[0] ? ` (first ${result.shown[0]} shown)` : "";
    $("filters").replaceChildren(
      el("p", { cls: "muted", text: `${result.title}${more}; rows: filters, columns: inputs` }),
      picture,
    );
  } catch (error) {
    report(error);
  }
}

// ---------------------------------------------------------------------------------------------
// The equation of one conv output value
// ---------------------------------------------------------------------------------------------

async function openEquation(layer, channel, y, x, depthChannel) {
  let query = `image=${encodeURIComponent(state.run.image)}&layer=${encodeURIComponent(layer)}` +
    `&channel=${channel}&y=${y}&x=${x}`;
  if (depthChannel !== undefined) query += `&depth_channel=${depthChannel}`;
  try {
    const result = await api(`/api/equation?${query}`);
    $("equation-panel").hidden = false;
    const box = $("equation");
    box.replaceChildren(...equationView(result));
    const chosen = box.querySelector("tr.chosen");
    if (chosen) chosen.parentElement.parentElement.scrollTop = chosen.offsetTop - 60;
    Object.assign(box.dataset, { layer, channel, y, x, depthChannel: result.depth_channel ?? "" });
  } catch (error) {
    report(error);
  }
}

function grid(values, padded, kind) {
  const table = el("table", { cls: `grid ${kind}` });
  const scale = Math.max(...values.flat().map(Math.abs)) || 1;
  values.forEach((row, u) => {
    const tr = el("tr");
    row.forEach((value, v) => {
      const pad = padded && padded[u][v];
      const td = el("td", { text: pad ? "0" : fmt(value, 3), title: String(value) });
      if (pad) td.className = "pad";
      else {
        td.style.background = colour(value, scale);
        if (Math.abs(value) > 0.6 * scale) td.style.color = "white";
      }
      tr.append(td);
    });
    table.append(tr);
  });
  return table;
}

function agreement(sum, output) {
  const ok = Math.abs(sum - output) <= 1e-4 * (1 + Math.abs(output));
  return el("span", {
    cls: ok ? "agree" : "disagree",
    text: ok ? "= the forward pass" : "differs from the forward pass",
  });
}

function convBlock(eq, prefix, names) {
  const [kh, kw] = eq.kernel;
  const nodes = [];
  const where = `y*${eq.stride[0]} + u*${eq.dilation[0]} - ${eq.padding[0]}, ` +
    `x*${eq.stride[1]} + v*${eq.dilation[1]} - ${eq.padding[1]}`;
  nodes.push(
    el("p", {
      cls: "formula",
      text: `${names.out}[${eq.channel}, ${eq.y}, ${eq.x}] = ${eq.has_bias ? "B + " : ""}` +
        `Σc Σu Σv W[${eq.channel}, c, u, v] · Pp(${names.input})[c, ${where}]`,
    }),
    el("p", {
      cls: "muted",
      text: `${kh} x ${kw} window over ${eq.input_channels.length} input channel(s) of ` +
        `${names.input} (${eq.input_shape.join(" x ")}); input rows ${eq.rows[0]}..` +
        `${eq.rows[eq.rows.length - 1]}, columns ${eq.cols[0]}..${eq.cols[eq.cols.length - 1]}; ` +
        "grey cells lie in the zero padding",
    }),
  );
  const blocks = el("div", { cls: "channels" });
  const shown = Math.min(eq.window.length, 4);
  for (let i = 0; i < shown; i++) {
    blocks.append(
      el("div", { cls: "channel-eq" }, [
        el("div", { cls: "muted", text: `input channel c = ${eq.input_channels[i]}` }),
        el("div", { cls: "triple" }, [
          labelled("window Pp(I)", grid(eq.window[i], eq.padded, "window")),
          el("span", { cls: "op", text: "⊙" }),
          labelled("filter W", grid(eq.weights[i], null, "weights")),
          el("span", { cls: "op", text: "=" }),
          labelled("products", grid(eq.products[i], eq.padded, "products")),
        ]),
        el("div", { text: `Σ = ${fmt(eq.channel_sums[i], 6)}` }),
      ]),
    );
  }
  nodes.push(blocks);
  if (eq.window.length > shown) {
    const rest = eq.channel_sums.slice(shown);
    const details = el("details", {}, [
      el("summary", {
        text: `${rest.length} more input channels, their sums add ` +
          fmt(rest.reduce((a, b) => a + b, 0), 6),
      }),
      el("p", { cls: "sums", text: rest.map((s, i) => `c${eq.input_channels[shown + i]}: ${fmt(s)}`).join("  ") }),
    ]);
    nodes.push(details);
  }
  const total = eq.channel_sums.reduce((a, b) => a + b, 0);
  nodes.push(
    el("div", { cls: "result" }, [
      termNode(`${prefix}-products`, "Σ products", total),
      el("span", { cls: "op", text: "+" }),
      termNode(`${prefix}-bias`, eq.has_bias ? "bias B" : "no bias", eq.bias),
      el("span", { cls: "op", text: "=" }),
      termNode(`${prefix}-sum`, "sum", eq.sum, "sum"),
      el("span", { cls: "op", text: "vs" }),
      termNode(`${prefix}-output`, "forward pass output", eq.output, "sum"),
      agreement(eq.sum, eq.output),
    ]),
  );
  return nodes;
}

function termNode(id, label, value, cls = "") {
  const valueNode = el("span", {
    cls: "term-value",
    text: fmt(value, 6),
    data: { value: String(value) },
  });
  valueNode.id = id;
  return el("span", { cls: `term ${cls}` }, [el("span", { cls: "term-label", text: label }), valueNode]);
}

function labelled(text, node) {
  return el("div", { cls: "labelled" }, [el("div", { cls: "muted", text }), node]);
}

function equationView(eq) {
  const head = el("h3", { text: `${eq.layer} (${eq.type}), channel ${eq.channel}, y ${eq.y}, x ${eq.x}` });
  if (eq.kind === "conv") return [head, ...convBlock(eq, "eq", { out: "O", input: "I" })];
  const pw = eq.pointwise;
  const table = el("table", { cls: "pointwise" });
  table.append(el("tr", {}, ["c", "D[c, y, x]", `Wp[${eq.channel}, c]`, "product"].map((t) => el("th", { text: t }))));
  pw.window.forEach((cell, c) => {
    const row = el("tr", { cls: c === eq.depth_channel ? "chosen" : "" }, [
      el("td", { text: String(c) }),
      el("td", { text: fmt(cell[0][0]) }),
      el("td", { text: fmt(pw.weights[c][0][0]) }),
      el("td", { text: fmt(pw.products[c][0][0]) }),
    ]);
    row.title = "show the depthwise sum of this channel";
    row.addEventListener("click", () => openEquation(eq.layer, eq.channel, eq.y, eq.x, c));
    table.append(row);
  });
  const total = pw.channel_sums.reduce((a, b) => a + b, 0);
  return [
    head,
    el("h4", { text: "1. Pointwise 1 x 1: a weighted sum over the depthwise outputs" }),
    el("p", {
      cls: "formula",
      text: `O[${eq.channel}, ${eq.y}, ${eq.x}] = ${pw.has_bias ? "B + " : ""}Σc Wp[${eq.channel}, c] · D[c, ${eq.y}, ${eq.x}]`,
    }),
    el("div", { cls: "scroll" }, [table]),
    el("div", { cls: "result" }, [
      termNode("eq-products", "Σ products", total),
      el("span", { cls: "op", text: "+" }),
      termNode("eq-bias", pw.has_bias ? "bias B" : "no bias", pw.bias),
      el("span", { cls: "op", text: "=" }),
      termNode("eq-sum", "sum", eq.sum, "sum"),
      el("span", { cls: "op", text: "vs" }),
      termNode("eq-output", "forward pass output", eq.output, "sum"),
      agreement(eq.sum, eq.output),
    ]),
    el("h4", {
      text: `2. Depthwise ${eq.depthwise.kernel.join(" x ")} of channel c = ${eq.depth_channel} ` +
        "(click a row above for another channel)",
    }),
    ...convBlock(eq.depthwise, "eq-depth", { out: "D", input: "I" }),
  ];
}

// ---------------------------------------------------------------------------------------------
// Drawing, training curves, wiring
// ---------------------------------------------------------------------------------------------

function setUpDrawing() {
  const canvas = $("draw");
  const context = canvas.getContext("2d");
  const width = state.summary.input_shape[2];
  const clear = () => {
    context.fillStyle = "black";
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  context.strokeStyle = "white";
  context.lineCap = "round";
  context.lineJoin = "round";
  context.lineWidth = Math.max(12, Math.min(34, (2.2 * canvas.width) / width));
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * canvas.width) / box.width,
      ((event.clientY - box.top) * canvas.height) / box.height,
    ];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
    context.lineTo(...point(event));
    context.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    runDrawing();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  $("draw-clear").addEventListener("click", clear);
  $("draw-run").addEventListener("click", runDrawing);
}

async function runDrawing() {
  try {
    await postImage(await canvasBlob($("draw")), "drawing");
  } catch (error) {
    report(error);
  }
}

function chart(title, series) {
  const width = 300;
  const height = 150;
  const pad = { left: 40, right: 8, top: 18, bottom: 22 };
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  if (!all.length) return svg;
  const low = Math.min(...all);
  const high = Math.max(...all) === low ? low + 1 : Math.max(...all);
  const count = Math.max(...series.map((s) => s.values.length));
  const px = (i) => pad.left + (count > 1 ? (i * (width - pad.left - pad.right)) / (count - 1) : 0);
  const py = (v) => pad.top + ((high - v) * (height - pad.top - pad.bottom)) / (high - low);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("text", { x: pad.left, y: 12, class: "chart-title" }, title);
  add("line", { x1: pad.left, y1: py(low), x2: width - pad.right, y2: py(low), class: "axis" });
  add("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: py(low), class: "axis" });
  add("text", { x: pad.left - 4, y: py(high) + 4, class: "tick end" }, fmt(high, 3));
  add("text", { x: pad.left - 4, y: py(low), class: "tick end" }, fmt(low, 3));
  add("text", { x: width - pad.right, y: height - 6, class: "tick end" }, `epoch ${count}`);
  series.forEach((s, k) => {
    const points = s.values
      .map((v, i) => (v === null || v === undefined ? null : `${px(i)},${py(v)}`))
      .filter(Boolean);
    add("polyline", { points: points.join(" "), class: `line line${k}` });
    s.values.forEach((v, i) => {
      if (v !== null && v !== undefined) add("circle", { cx: px(i), cy: py(v), r: 2.5, class: `dot line${k}` });
    });
    add("text", { x: pad.left + 8 + 90 * k, y: height - 6, class: `legend line${k}` }, s.name);
  });
  return svg;
}

async function pollCurves() {
  try {
    const result = await api("/api/curves");
    $("curves-panel").hidden = false;
    const history = result.history;
    const pick = (key) => history.map((h) => (key in h ? h[key] : null));
    $("curves-status").textContent =
      `${history.length} epoch(s)` + (result.finished ? ", finished" : ", refreshed every 3 s");
    $("curves").replaceChildren(
      chart("loss", [
        { name: "train", values: pick("loss") },
        { name: "validation", values: pick("val_loss") },
      ]),
      chart("accuracy", [
        { name: "train", values: pick("accuracy") },
        { name: "validation", values: pick("val_accuracy") },
      ]),
    );
    if (result.epoch !== state.epoch && state.run) {
      state.epoch = result.epoch;
      if (state.run.image.startsWith("test-")) await runTest(state.testIndex);
      else showMessage(`the weights of epoch ${result.epoch} are loaded: run the image again`);
    }
    if (!result.finished) setTimeout(pollCurves, 3000);
  } catch (error) {
    report(error);
    setTimeout(pollCurves, 10000);
  }
}

function wire() {
  $("prev").addEventListener("click", () => runTest(state.testIndex - 1).catch(report));
  $("next").addEventListener("click", () => runTest(state.testIndex + 1).catch(report));
  $("test-index").addEventListener("change", (event) =>
    runTest(Number(event.target.value) || 0).catch(report),
  );
  $("upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file) return;
    try {
      await postImage(file, "upload");
    } catch (error) {
      report(new Error(`upload refused: ${error.message}`));
    }
  });
  $("explain-class").addEventListener("change", (event) => {
    state.explainClass = Number(event.target.value);
    state.followTop = false;
    explain();
  });
  $("cam-layer").addEventListener("change", explain);
  $("show-filters").addEventListener("click", showFilters);
  const canvas = $("channel-canvas");
  canvas.addEventListener("mousemove", (event) => {
    const cell = state.values && cellAt(event);
    $("hover-value").textContent = cell
      ? `${state.values.layer}[${state.values.channel}, ${cell.y}, ${cell.x}] = ${fmt(cell.value, 7)}`
      : "Point at a value.";
  });
  canvas.addEventListener("click", (event) => {
    const cell = state.values && cellAt(event);
    if (!cell) return;
    state.cell = { layer: state.values.layer, x: cell.x, y: cell.y };
    drawChannel();
    if (state.values.conv) openEquation(state.values.layer, state.values.channel, cell.y, cell.x);
    else $("hover-value").textContent =
      `${state.values.layer} is not a convolution: its value here is ${fmt(cell.value, 7)}`;
  });
}

wire();
start().catch(report);
