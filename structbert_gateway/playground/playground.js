// The playground: pick a pipeline, type Chinese text, see the answer as a person wants it. It calls
// the gateway's own HTTP API (the routes a user's code would call) and renders with textContent only
// (user text never becomes markup). Pipelines the server does not serve are not offered.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const lines = (s) => s.split("\n").map((x) => x.trim()).filter(Boolean);
const pct = (x) => `${(100 * x).toFixed(1)}%`;

// label/score pairs, best first, as bars
function bars(items) {
  const box = el("div", { class: "bars" });
  for (const { label, score } of [...items].sort((a, b) => b.score - a.score)) {
    box.append(el("div", { class: "bar", "data-label": label, "data-score": String(score) },
      el("span", { class: "name" }, label),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * score).toFixed(1)}%` })),
      el("span", { class: "value" }, pct(score))));
  }
  return box;
}

// texts with scores, best first, as a numbered list
function ranked(texts, scores) {
  const order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a]);
  const list = el("ol", { class: "ranked" });
  for (const i of order) {
    list.append(el("li", { "data-index": String(i), "data-score": String(scores[i]) },
      el("span", { class: "value" }, scores[i].toFixed(4)), texts[i]));
  }
  return list;
}

// the text with every extracted span marked (a span overlapping one already marked is listed only)
function highlighted(text, paths) {
  const spans = new Map();
  for (const path of paths) for (const s of path) spans.set(`${s.offset[0]}:${s.offset[1]}:${s.type}`, s);
  const chars = Array.from(text); // offsets count characters (code points), as the server's do
  const chosen = [];
  for (const s of [...spans.values()].sort((a, b) => a.offset[0] - b.offset[0] || b.offset[1] - a.offset[1])) {
    if (!chosen.length || s.offset[0] >= chosen[chosen.length - 1].offset[1]) chosen.push(s);
  }
  const p = el("p", { class: "highlighted" });
  let at = 0;
  for (const s of chosen) {
    p.append(chars.slice(at, s.offset[0]).join(""));
    p.append(el("mark", { "data-type": s.type, title: s.type, "data-start": String(s.offset[0]) },
      chars.slice(s.offset[0], s.offset[1]).join("")));
    at = s.offset[1];
  }
  p.append(chars.slice(at).join(""));
  const table = el("table", { class: "paths" }, el("tr", {}, el("th", {}, "#"), el("th", {}, "path")));
  paths.forEach((path, i) => table.append(el("tr", {}, el("td", {}, String(i + 1)),
    el("td", {}, path.map((s) => `${s.type}: ${s.span}`).join(" → ")))));
  return el("div", {}, p, paths.length ? table : el("p", { class: "status" }, "no spans found"));
}

const PIPELINES = [
  { model: "text_classification", name: "Text classification (sentiment)", hint: "One text; every label's probability.",
    text: "这家酒店的服务很周到，早餐也很好吃", text2: null,
    run: async (a) => bars(await post("/predict", { inputs: a })) },
  { model: "zero_shot_classification", name: "Zero-shot classification (NLI)", hint: "A text and candidate labels (one per line, or separated by commas).",
    text: "这款手机拍照效果很好，电池也耐用", text2: ["Labels", "手机\n水果\n书籍\n酒店"],
    run: async (a, b) => {
      const labels = b.split(/[\n,，]/).map((x) => x.trim()).filter(Boolean);
      const body = await post("/v1/classify", { texts: a, labels, hypothesis_template: "这篇文章的标题是{}" });
      const r = body.data[0];
      return bars(r.labels.map((label, i) => ({ label, score: r.scores[i] })));
    } },
  { model: "information_extraction", name: "Information extraction (SiameseUIE)", hint: "A text and a schema (JSON: a type maps to null or to nested types).",
    text: "1944年毕业于北大的名古屋铁道会长谷口清太郎等人在日本积极筹资。", text2: ["Schema (JSON)", '{"人物": {"任职": null}, "组织机构": null, "地理位置": null}'],
    run: async (a, b) => {
      let schema;
      try { schema = JSON.parse(b); } catch (e) { throw new Error(`the schema is not valid JSON: ${e.message}`); }
      const body = await post("/v1/extract", { texts: a, schema });
      return highlighted(a, body.data[0].paths);
    } },
  { model: "sentence_similarity", name: "Sentence similarity (bi-encoder cosine)", hint: "A sentence and the sentences to compare it with (one per line); most similar first.",
    text: "今天天气很好", text2: ["Sentences", "今天天气不错\n酒店服务很周到\n明天会下雨吗"],
    run: async (a, b) => { const s = lines(b); return ranked(s, await post("/similarity", { inputs: { source_sentence: a, sentences: s } })); } },
  { model: "reranking", name: "Reranking (cross-encoder)", hint: "A query and passages (one per line); most relevant first.",
    text: "这家酒店的服务怎么样", text2: ["Passages", "服务很周到，前台很热情\n手机电池很耐用\n房间干净，但是前台态度一般"],
    run: async (a, b) => {
      const s = lines(b);
      const ranks = await post("/rerank", { query: a, texts: s });
      const scores = new Array(s.length);
      for (const r of ranks) scores[r.index] = r.score;
      return ranked(s, scores);
    } },
  { model: "pair_classification", name: "Pair classification (cross-encoder)", hint: "Two texts; every label's probability (\"1\": similar).",
    text: "今天天气很好", text2: ["Second text", "今天天气不错"],
    run: async (a, b) => bars(await post("/predict", { inputs: [a, b.trim()] })) },
  { model: "text_embedding", name: "Text embedding", hint: "One text; its L2-normalised vector.",
    text: "这家酒店的早餐很好吃", text2: null,
    run: async (a) => {
      const v = (await post("/v1/embeddings", { input: a, encoding_format: "float" })).data[0].embedding;
      const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      return el("div", {}, el("p", { class: "dims", "data-dims": String(v.length) }, `${v.length} dimensions, norm ${norm.toFixed(4)}`),
        el("p", { class: "vector" }, `[${v.slice(0, 12).map((x) => x.toFixed(4)).join(", ")}, …]`));
    } },
];

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && (data.error && (data.error.message || data.error) || data.message);
    throw new Error(`${response.status}: ${message || response.statusText}`);
  }
  return data;
}

function current() { return PIPELINES.find((p) => p.model === $("pipeline").value); }

function choose() {
  const p = current();
  $("hint").textContent = p.hint;
  $("text").value = p.text;
  $("text2-box").hidden = !p.text2;
  if (p.text2) { $("text2-label").textContent = p.text2[0]; $("text2").value = p.text2[1]; }
  $("result").replaceChildren();
  $("error").hidden = true;
  $("status").textContent = "";
}

async function run(event) {
  event.preventDefault();
  const p = current();
  $("error").hidden = true;
  $("result").replaceChildren();
  $("result").removeAttribute("data-model");
  $("status").textContent = "running…";
  const started = performance.now();
  try {
    const node = await p.run($("text").value, $("text2").value);
    $("result").replaceChildren(node);
    $("result").setAttribute("data-model", p.model);
    $("status").textContent = `${p.model}: ${Math.round(performance.now() - started)} ms`;
  } catch (e) {
    $("status").textContent = "";
    $("error").textContent = e.message;
    $("error").hidden = false;
  }
}

async function init() {
  let served = PIPELINES.map((p) => p.model);
  try {
    const headers = {};
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const r = await fetch("/v1/models", { headers });
    if (r.ok) served = (await r.json()).data.map((m) => m.id);
  } catch (e) { /* offer every pipeline; a missing one answers 404 */ }
  for (const p of PIPELINES.filter((x) => served.includes(x.model))) {
    $("pipeline").append(el("option", { value: p.model }, p.name));
  }
  $("pipeline").addEventListener("change", choose);
  $("form").addEventListener("submit", run);
  choose();
  document.body.setAttribute("data-ready", "1");
}

init();
