// Live refresh of the cluster status page: polls the JSON endpoint and redraws the table.
"use strict";

const POLL_MS = 1000;

function cell(text, className) {
  const td = document.createElement("td");
  if (className) {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    td.appendChild(span);
  } else {
    td.textContent = text;
  }
  return td;
}

function show(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value === undefined || value === null ? "" : String(value);
}

function render(status) {
  show("epoch", status.epoch);
  show("committed", status.committed_seq);
  show("policy", status.policy);
  const updated = document.getElementById("updated");
  if (updated) updated.textContent = new Date(status.fetched_at / 1000).toLocaleTimeString();
  const rows = document.getElementById("replica-rows");
  rows.replaceChildren(...status.replicas.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    tr.append(
      cell(r.id), cell(r.address), cell(r.pid ?? ""),
      cell(r.state, `state state-${r.state}`),
      cell(r.applied_seq), cell(r.epoch), cell(r.lag),
      cell((r.digest || "").slice(0, 16)),
      cell(r.last_heartbeat_ms === null || r.last_heartbeat_ms === undefined
        ? "never" : `${Math.round(r.last_heartbeat_ms)} ms ago`),
    );
    return tr;
  }));
  const alarms = document.getElementById("alarms");
  const items = (status.alarms || []).map((a) => {
    const li = document.createElement("li");
    li.textContent = typeof a === "string" ? a : JSON.stringify(a);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = status.reachable ? "No alarms." : "The coordinator cannot be reached.";
    items.push(li);
  }
  alarms.replaceChildren(...items);
}

async function poll(url) {
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (response.ok) render(await response.json());
  } catch (e) {
    // Network hiccup: keep the last table and try again.
  }
  setTimeout(() => poll(url), POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("cluster");
  if (root) setTimeout(() => poll(root.dataset.source), POLL_MS);
});
