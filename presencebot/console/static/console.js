// The console's only script: live queue updates and one-shot forms. Served from this server
// (the Content-Security-Policy allows no inline script), and it never builds HTML from data:
// every value goes into the page through textContent.
"use strict";

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function refreshQueue(table) {
  const query = window.location.search || "";
  let response;
  try {
    response = await fetch("/api/queue" + query, { credentials: "same-origin" });
  } catch (e) {
    return;
  }
  if (response.status === 401) {
    // Signed out (idle, expired, revoked): a queue that silently stopped updating would look live.
    window.location.assign("/login");
    return;
  }
  if (!response.ok) return;
  const data = await response.json();
  const body = table.tBodies[0];
  const rows = [];
  for (const a of data.alerts) {
    const tr = document.createElement("tr");
    tr.className = "sev-" + a.severity;
    tr.dataset.id = a.id;
    cell(tr, a.severity);
    const link = document.createElement("a");
    link.href = "/alerts/" + encodeURIComponent(a.id);
    link.textContent = a.id;
    cell(tr, "").appendChild(link);
    cell(tr, Math.floor(a.age_seconds / 60) + " min");
    cell(tr, a.where);
    cell(tr, a.category);
    cell(tr, a.target);
    cell(tr, a.requester);
    cell(tr, a.claimed_by || "—");
    let state = a.state + (a.disposition ? " (" + a.disposition + ")" : "");
    if (a.snoozed_until) {
      const until = new Date(a.snoozed_until);
      const hhmm = until.toISOString().slice(11, 16);
      state += " · snoozed until " + hhmm + " UTC";
    }
    cell(tr, state);
    rows.push(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(tr, "No alerts.");
    td.colSpan = 9;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const stamp = document.getElementById("updated");
  if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("queue");
  if (table) {
    setInterval(() => refreshQueue(table), 2000);
  }
  // A form marked "once" cannot be submitted twice by a double click (the server also refuses
  // a repeated request id).
  for (const form of document.querySelectorAll("form.once")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button")) button.disabled = true;
    });
  }
});
