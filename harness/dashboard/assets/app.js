// The dashboard's page: it reads the session's state from the API (an
// event stream of whole states) and acts through the API. Nothing else.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("edgefault-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("edgefault-token", token);
    // Out of the address bar (and of screenshots, history, referrers).
    history.replaceState(null, "", location.pathname);
  }
  const $ = (sel, el) => (el || document).querySelector(sel);
  const HISTORY = 120; // points per chart: a minute at two a second
  const hist = {}; // member -> {tput: [], depth: []}
  let updates = 0;
  let cards = {}; // member -> element
  let built = "";

  function toast(msg) {
    const t = $("#toast");
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  async function call(path, body) {
    let res;
    try {
      res = await fetch(path, {
        method: "POST",
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify(body || {}),
      });
    } catch (e) {
      toast("the dashboard's server is unreachable: " + e.message);
      return false;
    }
    if (!res.ok) {
      let msg = res.statusText;
      try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
      toast(msg);
      return false;
    }
    return true;
  }

  function fmtRate(bps) {
    if (!(bps > 0)) return "0 bit/s";
    const u = [["Gbit/s", 1e9], ["Mbit/s", 1e6], ["kbit/s", 1e3]];
    for (const [n, v] of u) if (bps >= v) return (bps / v).toFixed(1) + " " + n;
    return Math.round(bps) + " bit/s";
  }

  function points(values) {
    const max = Math.max(1, ...values);
    const n = values.length;
    return values.map((v, i) => ((i * 120) / Math.max(1, HISTORY - 1)).toFixed(1) + "," + (29 - (v / max) * 28).toFixed(1)).join(" ") + (n ? "" : "");
  }

  function build(st) {
    const sites = $("#sites");
    sites.textContent = "";
    cards = {};
    const tpl = $("#member-tpl");
    const bySite = new Map();
    for (const m of st.members) {
      if (!bySite.has(m.site)) bySite.set(m.site, new Map());
      const b = bySite.get(m.site);
      const key = m.building || "";
      if (!b.has(key)) b.set(key, []);
      b.get(key).push(m);
    }
    for (const [site, buildings] of bySite) {
      const sec = document.createElement("section");
      sec.className = "site";
      sec.dataset.site = site;
      const h = document.createElement("h2");
      h.textContent = site;
      sec.appendChild(h);
      for (const [bname, members] of buildings) {
        const wrap = document.createElement("div");
        wrap.className = bname ? "building" : "";
        if (bname) {
          const bh = document.createElement("div");
          bh.textContent = "building " + bname;
          wrap.appendChild(bh);
        }
        const grid = document.createElement("div");
        grid.className = "members";
        for (const m of members) {
          const el = tpl.content.firstElementChild.cloneNode(true);
          el.dataset.member = m.name;
          $(".name", el).textContent = m.name;
          $(".role", el).textContent = m.role;
          const sel = $("select", el);
          for (const p of st.profiles) {
            const o = document.createElement("option");
            o.value = p;
            o.textContent = p;
            sel.appendChild(o);
          }
          const shapeable = m.role === "gateway" ? st.limits.gateways : st.limits.nodeLinks;
          if (!shapeable) $(".controls", el).hidden = true;
          $('[data-action="cut"]', el).addEventListener("click", () => call("/api/shape", { target: m.name, outage: true }));
          $('[data-action="restore"]', el).addEventListener("click", () => call("/api/restore", { target: m.name }));
          $('[data-action="shape"]', el).addEventListener("click", () => {
            const body = { target: m.name };
            const p = $('[data-field="profile"]', el).value;
            if (p) body.profile = p;
            for (const f of ["rate", "delay", "loss"]) {
              const v = $('[data-field="' + f + '"]', el).value.trim();
              if (v) body[f] = v;
            }
            call("/api/shape", body);
          });
          grid.appendChild(el);
          cards[m.name] = el;
          hist[m.name] = hist[m.name] || { tput: [], depth: [] };
        }
        wrap.appendChild(grid);
        sec.appendChild(wrap);
      }
      sites.appendChild(sec);
    }
    const steps = $("#steps");
    steps.textContent = "";
    for (const s of st.steps) {
      const li = document.createElement("li");
      li.dataset.step = s.index;
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "▶";
      b.title = "play this step now";
      b.addEventListener("click", () => call("/api/step", { index: s.index }));
      li.appendChild(b);
      li.appendChild(document.createTextNode(" +" + s.at + " " + s.group + ": " + s.what + (s.note ? " (" + s.note + ")" : "")));
      steps.appendChild(li);
    }
    if (!st.steps.length) steps.textContent = "no timeline: shape the links by hand";
  }

  function render(st) {
    const shape = JSON.stringify(st.members.map((m) => [m.name, m.site, m.building, m.role])) + st.steps.length + st.profiles.join();
    if (shape !== built) {
      build(st);
      built = shape;
    }
    updates++;
    document.body.dataset.updates = String(updates);
    $("#scenario").textContent = st.scenario;
    $("#meta").textContent = st.provider + " · " + st.backend + " · time scale " + st.timeScale;
    $("#clock").textContent = "t+" + Math.max(0, (Date.parse(st.now) - Date.parse(st.started)) / 1000).toFixed(0) + "s";
    $("#play").disabled = st.playing || st.ended;
    $("#play").textContent = st.playing ? "Playing…" : "Play timeline";
    for (const m of st.members) {
      const el = cards[m.name];
      if (!el) continue;
      const g = $(".gate", el);
      const gate = m.gate || (m.role === "node" ? "unknown" : "none");
      g.dataset.gate = gate;
      g.textContent = "gate " + gate;
      el.dataset.impaired = String(!m.asBuilt && !m.outage);
      el.dataset.outage = String(!!m.outage);
      const imp = $(".imp", el);
      imp.textContent = m.asBuilt ? "as built" + (m.impairment ? ": " + m.impairment : "") : m.impairment;
      imp.classList.toggle("built", !!m.asBuilt);
      imp.classList.toggle("outage", !!m.outage);
      const tput = (m.rxBps || 0) + (m.txBps || 0);
      $(".tput", el).textContent = fmtRate(tput);
      $(".depth", el).textContent = m.depth != null ? "buffer " + m.depth : "";
      $(".failover", el).textContent = m.failover ? "failover " + m.failover : "";
      const marks = [];
      if (m.uplink) marks.push("uplink=" + m.uplink);
      if (m.tainted) marks.push("tainted");
      if (m.unschedulable) marks.push("cordoned");
      $(".marks", el).textContent = marks.join(" ");
      const h = hist[m.name];
      h.tput.push(tput);
      h.depth.push(m.depth || 0);
      if (h.tput.length > HISTORY) h.tput.shift();
      if (h.depth.length > HISTORY) h.depth.shift();
      $(".tput-chart polyline", el).setAttribute("points", points(h.tput));
      $(".depth-chart polyline", el).setAttribute("points", points(h.depth));
    }
    for (const li of document.querySelectorAll("#steps li")) {
      const s = st.steps[Number(li.dataset.step)];
      li.classList.toggle("played", !!(s && s.played));
    }
    const acts = $("#actions");
    acts.textContent = "";
    for (const a of st.actions.slice().reverse().slice(0, 12)) {
      const li = document.createElement("li");
      li.textContent = new Date(a.time).toLocaleTimeString() + " " + (a.target ? a.target + ": " : "") + a.what + (a.took ? " (" + a.took + ")" : "") + (a.err ? " — " + a.err : "");
      if (a.err) li.className = "err";
      acts.appendChild(li);
    }
    if (st.ended) setConn("ended");
  }

  function setConn(state) {
    const c = $("#conn");
    c.dataset.conn = state;
    c.textContent = state;
  }

  function connect() {
    const es = new EventSource("/api/events?token=" + encodeURIComponent(token));
    es.addEventListener("open", () => setConn("live"));
    es.addEventListener("state", (e) => {
      try { render(JSON.parse(e.data)); } catch (err) { toast("bad state from the server: " + err.message); }
    });
    es.addEventListener("ended", () => { setConn("ended"); es.close(); });
    es.addEventListener("error", () => { if ($("#conn").dataset.conn !== "ended") setConn("lost"); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#play").addEventListener("click", () => call("/api/play"));
    $("#reset").addEventListener("click", () => call("/api/reset"));
    $("#view").addEventListener("click", () => {
      const on = document.body.classList.toggle("presenter");
      $("#view").setAttribute("aria-pressed", String(on));
    });
    if (!token) {
      toast("no session token: open the URL edgefault printed");
      setConn("lost");
      return;
    }
    connect();
  });
})();
