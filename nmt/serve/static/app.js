// nmt-serve's page: POST /translate, list the n-best translations, draw the attention of the
// chosen one as an SVG heatmap (source pieces across, target pieces down). No dependencies.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CELL = 22; // px per heatmap cell
const $ = (id) => document.getElementById(id);
let results = []; // per sentence: {source, nbest: [{text, score, tokens, attention, source_pieces}]}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function describeModel() {
  try {
    const info = await (await fetch("/models")).json();
    const m = info.model || {};
    const scores = Object.entries(info.scores || {})
      .map(([split, s]) => `${split} BLEU ${Number(s.bleu).toFixed(1)}`)
      .slice(0, 1);
    const parts = [info.name, m.cell, m.attention && `${m.attention} attention`, ...scores];
    $("model-info").textContent = parts.filter(Boolean).join(" · ");
    for (const id of ["beam", "nbest"]) $(id).max = info.limits.max_beam;
  } catch (err) {
    $("model-info").textContent = "The model description could not be read.";
  }
}

async function translate(event) {
  event.preventDefault();
  const sentences = $("source").value.split("\n").map((s) => s.trim()).filter((s) => s);
  if (sentences.length === 0) {
    setStatus("Type at least one sentence.", true);
    return;
  }
  const body = {
    sentences,
    beam: Number($("beam").value),
    n_best: Number($("nbest").value),
    alignments: true,
  };
  $("translate").disabled = true;
  setStatus("Translating…");
  try {
    const response = await fetch("/translate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      setStatus(data.error || `The server answered ${response.status}.`, true);
      return;
    }
    results = sentences.map((source, i) => ({ source, nbest: data.translations[i] }));
    showResults();
    setStatus(`Translated ${sentences.length} sentence(s).`);
  } catch (err) {
    setStatus(`The server could not be reached (${err.message}).`, true);
  } finally {
    $("translate").disabled = false;
  }
}

function showResults() {
  const container = $("results");
  container.replaceChildren();
  results.forEach((result, i) => {
    const article = document.createElement("article");
    article.className = "sentence";
    article.id = `sentence-${i}`;
    const source = document.createElement("p");
    source.className = "source";
    source.textContent = result.source;
    const list = document.createElement("ol");
    list.className = "nbest";
    list.setAttribute("aria-label", `Translations of sentence ${i + 1}, best first`);
    result.nbest.forEach((hyp, k) => list.append(hypothesisItem(hyp, i, k)));
    article.append(source, list);
    container.append(article);
  });
  if (results.length && results[0].nbest.length) select(0, 0);
  else $("attention").hidden = true;
}

function hypothesisItem(hyp, i, k) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "hyp";
  button.id = `hyp-${i}-${k}`;
  button.setAttribute("aria-pressed", "false");
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = hyp.text;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hyp.score.toFixed(3);
  score.title = "score (log-probability with the length penalty)";
  button.append(text, score);
  button.addEventListener("click", () => select(i, k));
  item.append(button);
  return item;
}

function select(i, k) {
  for (const b of document.querySelectorAll(".hyp")) b.setAttribute("aria-pressed", "false");
  $(`hyp-${i}-${k}`).setAttribute("aria-pressed", "true");
  const hyp = results[i].nbest[k];
  $("attention").hidden = false;
  $("heatmap-caption").textContent = `Attention of sentence ${i + 1}, translation ${k + 1}`;
  if (!hyp.attention) {
    $("heatmap").replaceChildren(document.createTextNode("This model has no attention."));
    return;
  }
  // One row per target piece, plus the end of sentence when the search emitted it.
  const rows = hyp.attention.map((_, r) => hyp.tokens[r] ?? "</s>");
  $("heatmap").replaceChildren(heatmap(hyp.attention, hyp.source_pieces, rows));
}

function heatmap(matrix, columns, rows) {
  const left = 8 + 7 * Math.max(...rows.map((r) => r.length), 1);
  const top = 8 + 7 * Math.max(...columns.map((c) => c.length), 1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", left + CELL * columns.length);
  svg.setAttribute("height", top + CELL * rows.length);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Attention heatmap: ${rows.length} target by ${columns.length} source pieces`);
  svg.dataset.rows = rows.length;
  svg.dataset.cols = columns.length;
  columns.forEach((piece, c) => {
    const x = left + CELL * c + CELL / 2;
    svg.append(label(piece, x, top - 6, `rotate(-60 ${x} ${top - 6})`, "start"));
  });
  rows.forEach((piece, r) => {
    svg.append(label(piece, left - 6, top + CELL * r + CELL / 2 + 4, null, "end"));
    matrix[r].forEach((weight, c) => {
      const cell = document.createElementNS(SVG, "rect");
      cell.setAttribute("class", "cell");
      cell.setAttribute("x", left + CELL * c);
      cell.setAttribute("y", top + CELL * r);
      cell.setAttribute("width", CELL - 1);
      cell.setAttribute("height", CELL - 1);
      cell.setAttribute("fill", shade(weight));
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${piece} ← ${columns[c]}: ${weight.toFixed(3)}`;
      cell.append(title);
      svg.append(cell);
    });
  });
  return svg;
}

function label(text, x, y, transform, anchor) {
  const node = document.createElementNS(SVG, "text");
  node.setAttribute("x", x);
  node.setAttribute("y", y);
  node.setAttribute("text-anchor", anchor);
  if (transform) node.setAttribute("transform", transform);
  node.textContent = text;
  return node;
}

function shade(weight) {
  // white (0) to dark blue (1)
  const w = Math.min(1, Math.max(0, weight));
  const channel = (from, to) => Math.round(from + (to - from) * w);
  return `rgb(${channel(255, 16)}, ${channel(255, 52)}, ${channel(255, 140)})`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("translate-form").addEventListener("submit", translate);
  describeModel();
});
