// Follows a test message on its page: reads /send-test/{id}/state about once a second and
// shows the words the server sends, until the verdict is final. Without this script the page
// still works: its "Refresh" link shows the state again.
"use strict";

(function () {
  const box = document.getElementById("follow");
  if (!box || box.dataset.final === "true") {
    return;
  }
  const url = box.dataset.stateUrl;
  const headline = box.querySelector(".headline strong");
  const details = box.querySelector("dl");
  const EVERY_MS = 1000;
  const AFTER_A_FAILURE_MS = 5000;

  // What the page says now, to change it (and have screen readers announce it) only when the
  // words change.
  function said(words, pairs) {
    return JSON.stringify([words, pairs]);
  }

  function shownNow() {
    const cells = Array.from(details.children, (cell) => cell.textContent);
    const pairs = [];
    for (let index = 0; index + 1 < cells.length; index += 2) {
      pairs.push([cells[index], cells[index + 1]]);
    }
    return said(headline.textContent, pairs);
  }

  let shown = shownNow();

  function show(state) {
    box.className = "follow verdict-" + state.verdict;
    box.dataset.final = state.final ? "true" : "false";
    const next = said(state.headline, state.details);
    if (next === shown) {
      return;
    }
    shown = next;
    headline.textContent = state.headline;
    const rows = [];
    for (const [label, value] of state.details) {
      const term = document.createElement("dt");
      term.textContent = label;
      const description = document.createElement("dd");
      description.textContent = value;
      rows.push(term, description);
    }
    details.replaceChildren(...rows);
  }

  async function look() {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (error) {
      // The console is out of reach for a moment (restarting, network): try again later.
      window.setTimeout(look, AFTER_A_FAILURE_MS);
      return;
    }
    if (!response.ok) {
      return; // signed out, or no longer allowed: the Refresh link says what to do
    }
    const state = await response.json();
    show(state);
    if (!state.final) {
      window.setTimeout(look, EVERY_MS);
    }
  }

  window.setTimeout(look, EVERY_MS);
})();
