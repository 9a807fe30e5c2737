// A running job's page follows its own log lines: every second it asks GET /jobs/{id}/logs?after=<last line>,
// appends what is new (as text only), and stops once the job has ended and its last lines have arrived.
"use strict";

(function () {
  const section = document.getElementById("logs");
  if (!section || !("live" in section.dataset)) return;
  const box = document.getElementById("log-lines");
  const empty = document.getElementById("logs-empty");
  const FINAL = ["completed", "failed", "cancelled"];
  let lastId = "";
  const known = box.querySelectorAll(".log-line");
  if (known.length) lastId = known[known.length - 1].dataset.id;
  let endedPolls = 0;

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function append(line) {
    const div = document.createElement("div");
    div.className = "log-line " + line.level;
    div.dataset.id = line.id;
    const at = document.createElement("time");
    at.dateTime = line.at;
    at.textContent = line.at.slice(11, 23);
    div.append(at, " ", span("level", line.level.toUpperCase()), " ", span("logger", line.logger), " ",
      span("muted", "#" + line.attempt), " ", span("message", line.message));
    box.append(div);
  }

  async function poll() {
    let page;
    try {
      const url = section.dataset.logs + (lastId ? "?after=" + encodeURIComponent(lastId) : "");
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "omit" });
      if (!response.ok) return schedule();
      page = await response.json();
    } catch (error) {
      return schedule();
    }
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    page.lines.forEach(append);
    if (page.lines.length) {
      lastId = page.lines[page.lines.length - 1].id;
      box.hidden = false;
      empty.hidden = true;
      if (atBottom) box.scrollTop = box.scrollHeight;
    }
    // Once ended, read twice more: a worker writes a job's last lines just after it ends.
    if (FINAL.indexOf(page.state) !== -1 && ++endedPolls > 2) return;
    schedule();
  }

  function schedule() {
    setTimeout(poll, 1000);
  }

  schedule();
})();
