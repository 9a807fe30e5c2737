// The Busy page stays live: every second it reads GET /workers and redraws the running jobs. Text via textContent only.
"use strict";

(function () {
  const section = document.getElementById("busy");
  if (!section) return;
  const rows = document.getElementById("busy-rows");
  const empty = document.getElementById("busy-empty");
  const summary = document.getElementById("busy-summary");

  function elapsed(ms) {
    const seconds = ms / 1000;
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const minutes = Math.floor(seconds / 60);
    return minutes + " min " + String(Math.floor(seconds % 60)).padStart(2, "0") + " s";
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function shortTime(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") : "";
  }

  function row(worker, job) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.jobId;
    tr.append(cell(worker.host), cell(String(worker.pid), "num"), cell(String(job.thread), "num"), cell(job.actor));
    const link = document.createElement("a");
    link.className = "id";
    link.href = "/dashboard/jobs/" + encodeURIComponent(job.jobId);
    link.title = job.jobId;
    link.textContent = job.jobId.slice(0, 8);
    const jobCell = document.createElement("td");
    jobCell.append(link);
    tr.append(jobCell, cell(job.queue, "wide"));
    const started = document.createElement("time");
    started.dateTime = job.startedAt;
    started.textContent = shortTime(job.startedAt);
    const startedCell = cell("", "wide");
    startedCell.append(started);
    const took = cell(elapsed(job.elapsedMs), "num");
    took.dataset.field = "elapsed";
    took.dataset.elapsedMs = String(job.elapsedMs);
    const progress = document.createElement("td");
    progress.dataset.field = "progress";
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = job.progress;
    bar.setAttribute("aria-label", "progress");
    const percent = document.createElement("span");
    percent.textContent = job.progress + "%";
    const message = document.createElement("span");
    message.className = "muted";
    message.textContent = job.progressMessage || "";
    progress.append(bar, " ", percent, " ", message);
    tr.append(startedCell, took, progress);
    return tr;
  }

  async function refresh() {
    if (document.hidden) return;
    let workers;
    try {
      const response = await fetch(section.dataset.poll, { headers: { Accept: "application/json" }, credentials: "omit" });
      if (!response.ok) return;
      workers = await response.json();
    } catch (error) {
      return;
    }
    const fresh = [];
    let threads = 0;
    workers.forEach(function (worker) {
      threads += worker.threads;
      worker.running.forEach(function (job) { fresh.push(row(worker, job)); });
    });
    rows.replaceChildren.apply(rows, fresh);
    empty.hidden = fresh.length > 0;
    summary.textContent = fresh.length + " of " + threads + " worker threads busy, in " + workers.length +
      " worker process" + (workers.length === 1 ? "" : "es") + ".";
  }

  setInterval(refresh, 1000);
})();
