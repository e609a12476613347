// camflow console: the live alert list (server-sent events) and the alert actions. No framework,
// no CDN: the console must work on an isolated control-room network.
"use strict";
const camflow = (() => {
  const role = () => (document.getElementById("me") || {}).dataset?.role;
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const statusText = (actions) => {
    if (!actions || !actions.length) return "open";
    const a = actions[actions.length - 1];
    return `${a.action === "acknowledge" ? "acknowledged" : "dismissed"} by ${a.actor} at ${a.time}`;
  };

  async function act(alertId, action) {
    const r = await fetch(`/api/alerts/${encodeURIComponent(alertId)}/actions`, {
      method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin",
      body: JSON.stringify({action}),
    });
    if (!r.ok) { const body = await r.json().catch(() => ({})); alert(body.detail || `failed: ${r.status}`); return null; }
    return r.json();
  }

  function row(a, fresh) {
    const tr = document.createElement("tr");
    tr.id = `alert-${a.alert_id}`;
    tr.dataset.alertId = a.alert_id;
    tr.dataset.type = a.type;
    if (fresh) tr.classList.add("new");
    const subject = a.type.startsWith("watchlist") && a.subject
      ? `<a href="/subjects/${encodeURIComponent(a.subject)}">${esc(a.subject)}</a>` : esc(a.subject);
    const buttons = role() === "operator"
      ? `<button class="small primary" data-action="acknowledge">Ack</button> <button class="small" data-action="dismiss">Dismiss</button>` : "";
    // The snapshot, scaled down by the console; else a watchlist alert's crop.
    const id = encodeURIComponent(a.alert_id);
    const picture = a.has_snapshot ? `/api/alerts/${id}/snapshot.jpg?w=192` : a.has_evidence ? `/api/alerts/${id}/evidence.jpg` : "";
    const thumb = picture ? `<a href="/alerts/${id}"><img class="thumb" loading="lazy" width="96" alt="snapshot of ${esc(a.type)}" src="${picture}"></a>` : "";
    tr.innerHTML = `<td class="thumb">${thumb}</td><td>${esc(a.time)}</td><td><a href="/alerts/${id}">${esc(a.type)}</a><div class="muted why">${esc(a.why)}</div></td>
      <td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td><td>${esc(a.camera_id)}</td>
      <td>${subject}</td><td>${a.score == null ? "" : Number(a.score).toFixed(2)}</td>
      <td class="status">${esc(statusText(a.actions))}</td><td class="act">${buttons}</td>`;
    if (a.actions && a.actions.length) tr.classList.add("done");
    // past the evidence store's retention: no thumbnail rather than a broken one
    tr.querySelectorAll("img.thumb").forEach((img) => img.addEventListener("error", () => img.remove()));
    tr.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", async () => {
      const done = await act(a.alert_id, b.dataset.action);
      if (done) markAction(done);
    }));
    return tr;
  }

  function markAction(action) {
    const tr = document.getElementById(`alert-${action.alert_id}`);
    if (!tr) return;
    tr.querySelector(".status").textContent = statusText([action]);
    tr.classList.add("done");
  }

  function updateCount() {
    const n = document.querySelectorAll("#alerts tbody tr").length;
    document.getElementById("count").textContent = `${n} alert${n === 1 ? "" : "s"}`;
    document.getElementById("empty").hidden = n > 0;
  }

  async function alertsPage() {
    const tbody = document.querySelector("#alerts tbody");
    const live = document.getElementById("live");
    const r = await fetch("/api/alerts", {credentials: "same-origin"});
    if (r.status === 401) { location.href = "/login"; return; }
    const data = await r.json();
    data.alerts.forEach((a) => tbody.appendChild(row(a, false)));
    updateCount();
    const source = new EventSource(`/api/alerts/stream?after=${data.seq}`);
    source.onopen = () => { live.textContent = "live"; live.className = "pill on"; };
    source.onerror = () => { live.textContent = "reconnecting"; live.className = "pill off"; };
    source.addEventListener("alert", (e) => {
      const a = JSON.parse(e.data);
      if (document.getElementById(`alert-${a.alert_id}`)) return;  // at-least-once: already shown
      tbody.insertBefore(row(a, true), tbody.firstChild);
      updateCount();
    });
    source.addEventListener("action", (e) => markAction(JSON.parse(e.data)));
  }

  function alertPage() {
    const id = document.getElementById("alert").dataset.alertId;
    // A snapshot or clip past the evidence store's retention: say so instead of a broken image.
    const gone = (media) => {
      const note = document.createElement("p");
      note.className = "muted gone";
      note.textContent = "No longer in the evidence store.";
      media.replaceWith(note);
    };
    document.querySelectorAll("img.evidence, video.evidence").forEach((media) => {
      const failed = media.tagName === "IMG" ? media.complete && media.naturalWidth === 0 : media.error;
      if (failed) gone(media);  // failed before this script ran
      else media.addEventListener("error", () => gone(media));
    });
    document.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", async () => {
      const done = await act(id, b.dataset.action);
      if (!done) return;
      const list = document.getElementById("actions");
      list.querySelectorAll(".muted").forEach((li) => li.remove());
      const li = document.createElement("li");
      li.innerHTML = `<b>${esc(done.action)}</b> by ${esc(done.actor)} at ${esc(done.time)}`;
      list.appendChild(li);
    }));
  }

  return {alertsPage, alertPage};
})();
