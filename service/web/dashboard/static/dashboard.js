// The dashboard's behaviour: the API token for this tab, actions (with confirmation), sending a job, bulk actions
// (confirmed with their dry-run count, then followed), live progress from GET /jobs/{id}/events, and refreshing the
// overview's figures. Text goes in via textContent only.
"use strict";

(function () {
  const TOKEN_KEY = "jobs.apiToken";
  const FINAL = ["completed", "failed", "cancelled"];
  const tokenRequired = document.body.dataset.tokenRequired === "yes";
  const statusLine = document.getElementById("status");

  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.dataset.kind = kind || "info";
  }

  // -- the API token, kept in sessionStorage: this tab only, gone when it closes ---------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function showTokenState() {
    const form = document.getElementById("token-form");
    const kept = document.getElementById("token-set");
    if (!form || !kept) return;
    form.hidden = token() !== "";
    kept.hidden = token() === "";
  }

  function askForToken(why) {
    showTokenState();
    say(why, "error");
    const input = document.getElementById("token-input");
    if (input) input.focus();
  }

  const tokenForm = document.getElementById("token-form");
  if (tokenForm) {
    tokenForm.addEventListener("submit", function (event) {
      event.preventDefault();
      const input = document.getElementById("token-input");
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      showTokenState();
      say("Token kept for this tab.", "ok");
    });
    document.getElementById("token-forget").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
      say("Token forgotten.", "ok");
    });
    showTokenState();
  }

  // -- calling the API ------------------------------------------------------------------------------------------

  function describe(data, response) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) {
      return data.detail
        .map(function (e) {
          return (Array.isArray(e.loc) ? e.loc.join(".") + ": " : "") + e.msg;
        })
        .join("; ");
    }
    return "HTTP " + response.status + " " + response.statusText;
  }

  // Returns {response, data}, or null when no request was made because the token is missing.
  async function call(method, url, body) {
    const headers = { Accept: "application/json" };
    if (tokenRequired) {
      if (!token()) {
        askForToken("Enter the API token first: actions need it.");
        return null;
      }
      // A header set by this script is never attached by the browser to a request from another site.
      headers.Authorization = "Bearer " + token();
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method: method, headers: headers, body: body, credentials: "omit" });
    } catch (error) {
      say("The service did not answer: " + error.message, "error");
      return null;
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken("Refused: " + describe(data, response) + ". Enter the API token.");
    }
    return { response: response, data: data };
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-url]");
    if (!button || button.disabled) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    // data-body: a JSON body the server wrote (e.g. which job ids); absent for actions without one.
    const outcome = await call(button.dataset.method || "POST", button.dataset.url, button.dataset.body);
    button.disabled = false;
    if (!outcome) return;
    if (outcome.response.ok) {
      say(button.dataset.done || "Done.", "ok");
      setTimeout(function () { window.location.reload(); }, 600);
    } else if (outcome.response.status !== 401) {
      say("Refused: " + describe(outcome.data, outcome.response), "error");
    }
  });

  // -- sending a job --------------------------------------------------------------------------------------------

  const sendForm = document.getElementById("send-form");
  if (sendForm) {
    sendForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const fields = new FormData(sendForm);
      const text = String(fields.get("payload") || "{}");
      try {
        JSON.parse(text);
      } catch (error) {
        say("The payload is not valid JSON: " + error.message, "error");
        return;
      }
      const query = new URLSearchParams();
      if (fields.get("priority")) query.set("priority", String(fields.get("priority")));
      if (fields.get("delay")) query.set("delay", String(fields.get("delay")));
      const url = "/jobs/" + encodeURIComponent(String(fields.get("actor"))) + (query.toString() ? "?" + query.toString() : "");
      const outcome = await call("POST", url, text);
      if (!outcome) return;
      if (outcome.response.ok && outcome.data && outcome.data.jobId) {
        window.location.assign("/dashboard/jobs/" + encodeURIComponent(outcome.data.jobId));
      } else if (outcome.response.status !== 401) {
        say("Not sent: " + describe(outcome.data, outcome.response), "error");
      }
    });
  }

  // -- a bulk action on every job the list's filters match: the count first, in the confirmation ------------------

  const bulkForm = document.getElementById("bulk-form");
  if (bulkForm) {
    const progressLine = document.getElementById("bulk-progress");
    const QUESTIONS = {
      retry: function (n) { return "Retry " + n + " jobs?"; },
      cancel: function (n) { return "Cancel " + n + " jobs?"; },
      "requeue-dead": function (n) { return "Requeue the dead letters of " + n + " jobs?"; },
    };
    const NONE = { retry: "No job to retry", cancel: "No job to cancel", "requeue-dead": "No dead letter to requeue" };
    const DONE = { retry: "retried", cancel: "cancelled", "requeue-dead": "requeued" };
    const number = function (n) { return Number(n).toLocaleString("en-US"); };

    function showProgress(run) {
      progressLine.hidden = false;
      let text = run.action + ": " + number(run.done) + " of " + number(run.total) + " done, " + number(run.acted) + " " +
        DONE[run.action];
      if (run.skipped) text += ", " + number(run.skipped) + " skipped (changed meanwhile)";
      text += run.state === "running" ? "…" : " (" + run.state + (run.error ? ": " + run.error : "") + ").";
      progressLine.textContent = text;
      progressLine.dataset.state = run.state;
    }

    async function follow(location) {
      while (true) {
        let run;
        try {
          const response = await fetch(location, { headers: { Accept: "application/json" }, credentials: "omit" });
          if (!response.ok) { say("Progress unavailable: HTTP " + response.status, "error"); return; }
          run = await response.json();
        } catch (error) {
          say("The service did not answer: " + error.message, "error");
          return;
        }
        showProgress(run);
        if (run.state !== "running") {
          say("Bulk " + run.action + " " + run.state + ".", run.state === "done" ? "ok" : "error");
          return;
        }
        await new Promise(function (resolve) { setTimeout(resolve, 500); });
      }
    }

    bulkForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const button = bulkForm.querySelector("button[type=submit]");
      const action = String(new FormData(bulkForm).get("action"));
      const filter = JSON.parse(bulkForm.dataset.filter || "{}");
      button.disabled = true;
      try {
        const counted = await call("POST", "/jobs/bulk", JSON.stringify({ filter: filter, action: action, dryRun: true }));
        if (!counted) return;
        if (!counted.response.ok) {
          if (counted.response.status !== 401) say("Refused: " + describe(counted.data, counted.response), "error");
          return;
        }
        const count = counted.data.count;
        if (count === 0) { say(NONE[action] + " among the jobs these filters match.", "info"); return; }
        if (!window.confirm(QUESTIONS[action](number(count)))) return;
        const started = await call("POST", "/jobs/bulk", JSON.stringify({ filter: filter, action: action }));
        if (!started) return;
        if (!started.response.ok) {
          if (started.response.status !== 401) say("Refused: " + describe(started.data, started.response), "error");
          return;
        }
        showProgress(started.data);
        await follow(started.response.headers.get("Location"));
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- live progress of one job ---------------------------------------------------------------------------------

  const job = document.querySelector("[data-events]");
  if (job && window.EventSource) {
    const bar = document.getElementById("progress");
    const percent = document.getElementById("progress-percent");
    const message = document.getElementById("progress-message");
    const state = document.getElementById("job-state");
    const attempts = document.getElementById("job-attempts");
    const source = new EventSource(job.dataset.events);
    source.addEventListener("job", function (event) {
      const snapshot = JSON.parse(event.data);
      bar.value = snapshot.progress;
      percent.textContent = snapshot.progress + "%";
      message.textContent = snapshot.progressMessage || "";
      state.textContent = snapshot.state;
      state.className = "badge " + snapshot.state;
      attempts.textContent = String(snapshot.attempts);
      if (FINAL.indexOf(snapshot.state) !== -1) {
        // The stream ends here; reload once to show the result or the failure in full.
        source.close();
        setTimeout(function () { window.location.reload(); }, 400);
      }
    });
    ["gone", "unavailable"].forEach(function (name) {
      source.addEventListener(name, function (event) {
        source.close();
        say("Live updates stopped: " + JSON.parse(event.data).detail, "error");
      });
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) say("Live updates stopped; reload the page to resume.", "error");
    };
  }

  // -- the overview refreshes its figures every few seconds while visible ---------------------------------------

  const live = document.querySelectorAll("[data-refresh][id]");
  if (live.length) {
    setInterval(async function () {
      if (document.hidden) return;
      let html;
      try {
        const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
        if (!response.ok) return;
        html = await response.text();
      } catch (error) {
        return;
      }
      // The server escaped everything in this HTML; it replaces sections of the same page, same origin.
      const fresh = new DOMParser().parseFromString(html, "text/html");
      live.forEach(function (section) {
        const replacement = fresh.getElementById(section.id);
        const current = document.getElementById(section.id);
        if (replacement && current) current.replaceWith(document.importNode(replacement, true));
      });
    }, 5000);
  }
})();
