// Learnstream dashboard page: signs in with /v1/auth, reads the JSON dashboards, draws
// them with Chart.js (vendored), and polls for updates. No build step, no framework.
"use strict";

(() => {
  const params = new URLSearchParams(window.location.search);
  // Polling interval in ms (?poll=2000 for a faster page); never below one second.
  const POLL_MS = Math.max(1000, Number(params.get("poll")) || 10000);
  // Days of the progress chart (?days=30); the API's window ends on the latest active day.
  const TREND_DAYS = Math.min(365, Math.max(1, Number(params.get("days")) || 14));
  const TOKENS_KEY = "learnstream.tokens";
  const LABEL_COLOURS = {
    "not started": "#e4e7eb",
    practising: "#f8b4a6",
    familiar: "#fcd581",
    proficient: "#9fd5a6",
    mastered: "#3f9b5a",
  };
  const LABEL_ORDER = ["not started", "practising", "familiar", "proficient", "mastered"];

  // What the page last fetched, for people debugging it and for the browser test.
  const state = {
    me: null,
    view: null,
    learner: null,
    classes: [],
    classOverview: null,
    recAnalytics: null,
    experiments: [],
    drilldown: null,
    fraudAlerts: null,
    pipeline: null,
    polls: 0,
    placementActive: false,
    mailedLink: null,
    mfaSetup: null,
  };
  window.learnstream = { state, refresh: () => refresh() };

  // --- small helpers ------------------------------------------------------------------
  const $ = (selector, root = document) => root.querySelector(selector);

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      // Through the CSSOM: a style="" attribute is inline style, which the page's CSP refuses.
      else if (name === "style") node.style.cssText = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  const pct = (p) => (p === null || p === undefined ? "–" : `${Math.round(p * 100)}%`);
  const fixed = (x, digits = 2) => (x === null || x === undefined ? "–" : x.toFixed(digits));
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  // "3 h ago", "2 d ago": how old an inbox entry is, so an old digest's count is not read
  // as today's.
  function ago(iso) {
    const minutes = Math.round((Date.now() - new Date(iso).getTime()) / 60000);
    if (minutes < 1) return "just now";
    if (minutes < 60) return `${minutes} min ago`;
    if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h ago`;
    return `${Math.round(minutes / 1440)} d ago`;
  }

  // A card's list shows its first `limit` entries and says how many more there are, so a
  // card never clips its content or scrolls inside the page.
  function capped(items, limit, render, empty, noun) {
    if (!items.length) return [el("li", { class: "note" }, empty)];
    const shown = items.slice(0, limit).map(render);
    if (items.length > limit) shown.push(el("li", { class: "note" }, `and ${items.length - limit} more ${noun}`));
    return shown;
  }

  // Chart height that gives each of `rows` bars a readable line (px).
  const barsHeight = (rows) => Math.max(160, 22 * rows + 50);
  // The teacher's heat map and label chart show the skills with the most evidence in the
  // class first; the rest behind "show all" (a class of 30 can have practised 100+ skills).
  const CLASS_SKILLS_SHOWN = 12;
  let showAllClassSkills = false;

  function tokens() {
    const raw = sessionStorage.getItem(TOKENS_KEY);
    return raw ? JSON.parse(raw) : null;
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function call(path, options = {}, retry = true) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    const current = tokens();
    if (current) headers.Authorization = `Bearer ${current.access_token}`;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
    if (response.status === 401 && retry && current && current.refresh_token) {
      if (await refreshTokens(current.refresh_token)) return call(path, options, false);
    }
    const text = await response.text();
    const body = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, body || {});
    return body;
  }

  async function refreshTokens(refreshToken) {
    const response = await fetch("/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    if (!response.ok) {
      signOut();
      return false;
    }
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify(await response.json()));
    return true;
  }

  // --- sign in / out --------------------------------------------------------------------
  let mfaToken = null;

  async function onLogin(event) {
    event.preventDefault();
    const form = event.target;
    const error = $("#login-error");
    error.textContent = "";
    try {
      let body;
      if (mfaToken) {
        body = await call("/v1/auth/login/mfa", {
          method: "POST",
          body: { mfa_token: mfaToken, code: form.code.value.trim() },
        });
      } else {
        body = await call("/v1/auth/login", {
          method: "POST",
          body: {
            tenant_id: form.tenant_id.value.trim(),
            email: form.email.value.trim(),
            password: form.password.value,
          },
        });
      }
      if (body.mfa_required) {
        mfaToken = body.mfa_token;
        $("#mfa-field").hidden = false;
        form.code.focus();
        return;
      }
      mfaToken = null;
      sessionStorage.setItem(TOKENS_KEY, JSON.stringify(body));
      await showApp();
    } catch (exc) {
      error.textContent = exc.message;
    }
  }

  function signOut() {
    const current = tokens();
    sessionStorage.removeItem(TOKENS_KEY);
    if (current) {
      fetch("/v1/auth/logout", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Authorization: `Bearer ${current.access_token}`,
        },
        body: JSON.stringify({ refresh_token: current.refresh_token }),
      }).catch(() => {});
    }
    window.location.reload();
  }

  // --- single sign-on (OpenID Connect) ------------------------------------------------------
  // The tenant's providers show as links under the form once the tenant is known (typed,
  // or ?tenant=acme). Coming back, the API put a one-time code in the fragment
  // (/dashboard#action=oidc&code=...); the page trades it for tokens at once.
  async function showProviderButtons(tenantId) {
    const root = $("#sso-buttons");
    root.replaceChildren();
    if (!tenantId) return;
    try {
      const buttons = await call(`/v1/auth/oidc/providers?tenant_id=${encodeURIComponent(tenantId)}`);
      for (const b of buttons) {
        root.append(el("a", { class: "sso-button", href: b.start_url }, `Sign in with ${b.display_name}`));
      }
    } catch (exc) {
      // No buttons for an unknown tenant; the password form still works.
    }
  }

  async function handleProviderReturn() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const action = fragment.get("action");
    if (action !== "oidc" && action !== "oidc-error") return false;
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (action === "oidc-error") {
      $("#login-error").textContent = fragment.get("reason") || "single sign-on failed";
      return true;
    }
    try {
      const body = await call("/v1/auth/oidc/exchange", {
        method: "POST",
        body: { code: fragment.get("code") || "" },
      });
      if (body.mfa_required) {
        mfaToken = body.mfa_token;
        $("#mfa-field").hidden = false;
        return true;
      }
      sessionStorage.setItem(TOKENS_KEY, JSON.stringify(body));
      await showApp();
    } catch (exc) {
      $("#login-error").textContent = exc.message;
    }
    return true;
  }

  // --- links from account mail -------------------------------------------------------------
  // Mailed links carry their token in the URL fragment (/dashboard#action=unlock&token=lst_...).
  // Browsers never send the fragment, so the token reaches no access log, proxy or Referer;
  // the page takes it out of the address bar and history at once and POSTs it to the API.
  const LINK_ENDPOINTS = {
    "verify-email": ["/v1/auth/verify-email", "Your email address is confirmed. Sign in below."],
    unlock: ["/v1/auth/unlock", "Your account is unlocked. Sign in below."],
  };

  async function handleMailedLink() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const action = fragment.get("action");
    const token = fragment.get("token");
    if (!action || !token) return;
    history.replaceState(null, "", window.location.pathname + window.location.search);
    state.mailedLink = { action, done: false, error: null };
    $("#link-view").hidden = false;
    const status = $("#link-status");
    const fail = (exc) => {
      state.mailedLink.error = exc.message;
      status.textContent = exc.message;
    };
    if (action === "enrol") {
      // First sign-in of an account made with `learnstream user create`: set the password,
      // sign in with it, and (for roles that need it) go on to set up TOTP.
      const form = $("#enrol-form");
      form.hidden = false;
      status.textContent = "Welcome. Choose a password for your account.";
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const password = form.first_password.value;
          const enrolled = await call("/v1/auth/enrol", { method: "POST", body: { token, password } });
          const body = await call("/v1/auth/login", {
            method: "POST",
            body: { tenant_id: enrolled.tenant_id, email: enrolled.email, password },
          });
          form.hidden = true;
          state.mailedLink.done = true;
          $("#link-view").hidden = true;
          $("#login-form").tenant_id.value = enrolled.tenant_id;
          $("#login-form").email.value = enrolled.email;
          sessionStorage.setItem(TOKENS_KEY, JSON.stringify(body));
          await showApp();
        } catch (exc) {
          fail(exc);
        }
      });
      return;
    }
    if (action === "reset-password") {
      const form = $("#reset-form");
      form.hidden = false;
      status.textContent = "Choose a new password.";
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          await call("/v1/auth/password-reset/confirm", {
            method: "POST",
            body: { token, new_password: form.new_password.value },
          });
          form.hidden = true;
          status.textContent = "Your password is changed. Sign in with it below.";
          state.mailedLink.done = true;
        } catch (exc) {
          fail(exc);
        }
      });
      return;
    }
    const endpoint = LINK_ENDPOINTS[action];
    if (!endpoint) {
      fail(new Error("This link is not one this page knows."));
      return;
    }
    try {
      await call(endpoint[0], { method: "POST", body: { token } });
      status.textContent = endpoint[1];
      state.mailedLink.done = true;
    } catch (exc) {
      fail(exc);
    }
  }

  // --- charts -------------------------------------------------------------------------------
  // One Chart per canvas, updated in place on every poll (no flicker, no leak).
  function drawChart(canvas, config) {
    const existing = Chart.getChart(canvas);
    if (existing && existing.config.type === config.type) {
      existing.data = config.data;
      existing.options = config.options;
      existing.update("none");
      return existing;
    }
    if (existing) existing.destroy();
    return new Chart(canvas, config);
  }

  function masteryChart(canvas, skills) {
    canvas.parentElement.style.height = `${barsHeight(skills.length)}px`;
    drawChart(canvas, {
      type: "bar",
      data: {
        labels: skills.map((s) => s.name),
        datasets: [
          {
            label: "P(mastered)",
            data: skills.map((s) => s.p_mastery),
            backgroundColor: skills.map((s) => LABEL_COLOURS[s.label]),
            borderColor: "#52606d",
            borderWidth: 1,
          },
        ],
      },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { min: 0, max: 1, ticks: { callback: (v) => pct(v) } },
          y: { ticks: { autoSkip: false } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const skill = skills[ctx.dataIndex];
                return `${pct(skill.p_mastery)} · ${skill.label} · ${skill.correct}/${skill.attempts} right`;
              },
            },
          },
        },
      },
    });
  }

  function trendChart(canvas, trend) {
    drawChart(canvas, {
      type: "bar",
      data: {
        labels: trend.days.map((d) => d.day),
        datasets: [
          {
            type: "bar",
            label: "answers",
            data: trend.days.map((d) => d.attempts),
            backgroundColor: "#9fb3c8",
            yAxisID: "answers",
          },
          {
            type: "line",
            label: "accuracy",
            data: trend.days.map((d) => d.accuracy),
            borderColor: "#2f6fbd",
            backgroundColor: "#2f6fbd",
            spanGaps: true,
            tension: 0.2,
            yAxisID: "accuracy",
          },
        ],
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          answers: { position: "left", beginAtZero: true, title: { display: true, text: "answers" } },
          accuracy: {
            position: "right",
            min: 0,
            max: 1,
            grid: { drawOnChartArea: false },
            ticks: { callback: (v) => pct(v) },
          },
        },
      },
    });
  }

  function classSkillsChart(canvas, skills) {
    canvas.parentElement.style.height = `${barsHeight(skills.length) + 40}px`;
    drawChart(canvas, {
      type: "bar",
      data: {
        labels: skills.map((s) => s.name),
        datasets: LABEL_ORDER.map((label) => ({
          label,
          data: skills.map((s) => s.label_counts[label] || 0),
          backgroundColor: LABEL_COLOURS[label],
          borderColor: "#9aa5b1",
          borderWidth: 1,
        })),
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        indexAxis: "y",
        scales: {
          x: { stacked: true, beginAtZero: true, title: { display: true, text: "learners" } },
          y: { stacked: true, ticks: { autoSkip: false } },
        },
      },
    });
  }

  // --- learner view ---------------------------------------------------------------------------
  function renderLearner(root, data, { own }) {
    if (!root.firstElementChild) root.append($("#learner-template").content.cloneNode(true));
    const field = (name) => $(`[data-field="${name}"]`, root);
    const list = (name) => $(`[data-list="${name}"]`, root);

    field("mean").textContent = pct(data.mean_p_mastery);
    field("labels").textContent = LABEL_ORDER.filter((l) => data.label_counts[l])
      .map((l) => `${data.label_counts[l]} ${l}`)
      .join(" · ") || "no skills yet";
    field("ability").textContent = data.ability ? fixed(data.ability.ability) : "–";
    field("ability-detail").textContent = data.ability
      ? `± ${fixed(data.ability.ability_se)} logits after ${data.ability.n_responses} answers`
      : "no calibrated answers yet";
    field("streak").textContent = `${data.streak.current_days} d`;
    field("streak-detail").textContent =
      `longest ${data.streak.longest_days} d · ${data.streak.active_days} active days`;
    field("due").textContent = String(data.due_reviews.due_now);
    field("due-detail").textContent = `${data.due_reviews.due_next_24h} more within 24 h`;

    masteryChart($('[data-chart="mastery"]', root), data.mastery);
    trendChart($('[data-chart="trend"]', root), data.trend);

    list("gaps").replaceChildren(
      ...capped(
        data.gaps,
        5,
        (g) =>
          el(
            "li",
            {},
            el("strong", {}, g.name),
            " ",
            el("span", { class: `band-${g.band}` }, `${g.band} (${fixed(g.severity)})`),
            el("br"),
            el(
              "span",
              { class: "note" },
              `mastery ${pct(g.p_mastery)}` + (g.blocked_skills ? ` · blocks ${g.blocked_skills} skills` : ""),
            ),
          ),
        "no open gaps",
        "gaps",
      ),
    );
    // The API lists the first due reviews; due_now counts them all.
    const due = data.due_reviews.items.slice(0, 6);
    const moreDue = Math.max(data.due_reviews.due_now, data.due_reviews.items.length) - due.length;
    list("reviews").replaceChildren(
      ...capped(
        due,
        6,
        (r) => el("li", {}, r.title || r.item_id, el("br"), el("span", { class: "note" }, `due ${when(r.due_at)}`)),
        "nothing due",
        "reviews",
      ),
      ...(moreDue > 0 ? [el("li", { class: "note" }, `and ${moreDue} more due`)] : []),
    );
    list("milestones").replaceChildren(
      ...data.milestones.map((m) =>
        el(
          "li",
          { class: m.achieved ? "achieved" : "pending" },
          m.title,
          m.achieved ? "" : ` (${m.progress}/${m.target})`,
        ),
      ),
    );
    list("standing").replaceChildren(
      ...(data.class_standing.length
        ? data.class_standing.map((s) =>
            el(
              "li",
              {},
              el("strong", {}, s.class_name),
              ": ",
              s.available ? `ahead of ${Math.round(s.percentile)}% of the class` : s.reason,
            ),
          )
        : [el("li", { class: "note" }, "not in a class")]),
    );
    renderRecommendations($('[data-part="recommendations"]', root), data.recommendations, data, own);
    renderInbox($('[data-part="notifications"]', root), data.notifications, data, own);
    if (!state.placementActive) renderPlacement($('[data-part="placement"]', root), data.placement, own);
  }

  function renderRecommendations(node, part, data, own) {
    if (!part.available) {
      node.replaceChildren(el("p", { class: "note" }, `Not available yet: ${part.reason}`));
      return;
    }
    if (!part.items.length) {
      node.replaceChildren(el("p", { class: "note" }, "nothing recommended right now"));
      return;
    }
    const verdicts = [["done", "Done"], ["skipped", "Skip"], ["helpful", "Helpful"], ["not_helpful", "Not helpful"]];
    node.replaceChildren(
      el(
        "ul",
        { class: "plain" },
        ...capped(part.items, 3, (r) =>
          el(
            "li",
            {},
            el("strong", {}, r.title || r.item_id),
            ` (${r.kind})`,
            el("br"),
            el("span", { class: "note" }, `${r.reason.replace("_", " ")}: ${r.reason_detail}`),
            own
              ? el(
                  "div",
                  { class: "choices compact" },
                  ...verdicts.map(([verdict, text]) =>
                    el(
                      "button",
                      {
                        type: "button",
                        class: r.feedback === verdict ? "primary" : "",
                        onclick: () => giveFeedback(data.user_id, r.item_id, verdict),
                      },
                      text,
                    ),
                  ),
                )
              : null,
          ),
          "",
          "recommendations",
        ),
      ),
    );
  }

  async function giveFeedback(userId, itemId, verdict) {
    await call(`/v1/dashboards/learners/${encodeURIComponent(userId)}/recommendations/${encodeURIComponent(itemId)}/feedback`, {
      method: "POST",
      body: { verdict },
    });
    await refresh();
  }

  function renderInbox(node, inbox, data, own) {
    if (!inbox.available) {
      node.replaceChildren(el("p", { class: "note" }, `Not available yet: ${inbox.reason}`));
      return;
    }
    node.replaceChildren(
      el("p", { class: "note" }, `${inbox.unread} unread`),
      el(
        "ul",
        { class: "plain" },
        ...capped(
          inbox.items,
          4,
          (n) =>
            el(
              "li",
              { class: n.read_at ? "note" : "" },
              el("strong", {}, n.title),
              " ",
              el("span", { class: "note", title: when(n.created_at) }, ago(n.created_at)),
              el("br"),
              n.body,
              own && !n.read_at
                ? el(
                    "div",
                    { class: "choices compact" },
                    el(
                      "button",
                      { type: "button", onclick: () => markRead(data.user_id, n.notification_id) },
                      "Mark read",
                    ),
                  )
                : null,
            ),
          "no notifications",
          "notifications",
        ),
      ),
    );
  }

  async function markRead(userId, notificationId) {
    await call(`/v1/dashboards/learners/${encodeURIComponent(userId)}/notifications/${notificationId}/read`, {
      method: "POST",
    });
    await refresh();
  }

  // --- placement test (own view only) ------------------------------------------------------------
  function renderPlacement(node, result, own) {
    if (result) {
      node.replaceChildren(
        el(
          "p",
          {},
          `Ability ${fixed(result.ability)} ± ${fixed(result.ability_se)} logits from `,
          `${result.items_administered} questions (${result.correct} right), ${when(result.completed_at)}.`,
        ),
        el(
          "p",
          { class: "note" },
          result.skill_estimates.map((s) => `${s.skill_id}: ${pct(s.p_mastery)}`).join(" · "),
        ),
      );
      return;
    }
    if (!own) {
      node.replaceChildren(el("p", { class: "note" }, "no placement test taken"));
      return;
    }
    node.replaceChildren(
      el("p", { class: "note" }, "A short adaptive test sets your starting level."),
      el("button", { type: "button", class: "primary", onclick: () => startPlacement(node) }, "Take the placement test"),
    );
  }

  async function startPlacement(node) {
    state.placementActive = true;
    try {
      showQuestion(node, await call("/v1/placement/sessions", { method: "POST" }));
    } catch (exc) {
      state.placementActive = false;
      node.replaceChildren(el("p", { class: "error" }, exc.message));
    }
  }

  function showQuestion(node, placement) {
    if (placement.status === "completed") {
      state.placementActive = false;
      renderPlacement(node, placement.result, true);
      refresh();
      return;
    }
    const question = placement.question;
    const submit = async (response) => {
      try {
        showQuestion(
          node,
          await call(`/v1/placement/sessions/${placement.placement_id}/answers`, {
            method: "POST",
            body: { item_id: question.item_id, response },
          }),
        );
      } catch (exc) {
        node.append(el("p", { class: "error" }, exc.message));
      }
    };
    const input = el("input", { name: "response", autocomplete: "off" });
    node.replaceChildren(
      el("p", { class: "note" }, `Question ${placement.answered + 1} of at most ${placement.max_items}`),
      el("p", {}, el("strong", {}, question.title), el("br"), question.prompt),
      question.choices
        ? el("div", { class: "choices" }, ...question.choices.map((c) => el("button", { type: "button", onclick: () => submit(c) }, c)))
        : el(
            "form",
            { onsubmit: (e) => { e.preventDefault(); submit(input.value); } },
            input,
            el("button", { type: "submit", class: "primary" }, "Answer"),
          ),
    );
  }

  // --- teacher view -----------------------------------------------------------------------------
  function heatColour(p, label) {
    return p === null ? LABEL_COLOURS["not started"] : LABEL_COLOURS[label] || LABEL_COLOURS.practising;
  }

  // Indices of the skills the heat map shows: all, or the CLASS_SKILLS_SHOWN with the
  // most learners with evidence, in the overview's order.
  function shownSkills(overview) {
    const all = overview.skills.map((_, i) => i);
    if (showAllClassSkills || all.length <= CLASS_SKILLS_SHOWN) return all;
    const evidence = all.map((i) => overview.heatmap.filter((row) => row.p_mastery[i] !== null).length);
    const top = new Set([...all].sort((a, b) => evidence[b] - evidence[a]).slice(0, CLASS_SKILLS_SHOWN));
    return all.filter((i) => top.has(i));
  }

  function renderClass(overview) {
    const shown = shownSkills(overview);
    const hidden = overview.skills.length - shown.length;
    const toggle = $("#heatmap-toggle");
    toggle.hidden = overview.skills.length <= CLASS_SKILLS_SHOWN;
    toggle.textContent = hidden
      ? `Showing the ${shown.length} skills with the most evidence; show all ${overview.skills.length}`
      : `Show only the ${CLASS_SKILLS_SHOWN} skills with the most evidence`;
    const header = el(
      "tr",
      {},
      el("th", { class: "learner" }, "learner"),
      ...shown.map((i) => el("th", { title: overview.skills[i].skill_id }, overview.skills[i].name)),
      el("th", { title: "over every skill with evidence, shown or not" }, "mean"),
    );
    const rows = overview.heatmap.map((row) =>
      el(
        "tr",
        {},
        el(
          "td",
          { class: "learner" },
          el("a", { onclick: () => openDrilldown(row.user_id, row.display_name || row.learner_id) }, row.display_name || row.learner_id),
        ),
        ...shown.map((i) => {
          const p = row.p_mastery[i];
          return el(
            "td",
            { class: "cell", style: `background:${heatColour(p, row.labels[i])}`, title: row.labels[i] || "no evidence" },
            p === null ? "" : pct(p),
          );
        }),
        el("td", {}, pct(row.mean_p_mastery)),
      ),
    );
    $("#heatmap").replaceChildren(el("thead", {}, header), el("tbody", {}, ...rows));
    classSkillsChart($("#class-skills-chart"), shown.map((i) => overview.skills[i]));
    $("#at-risk").replaceChildren(
      ...capped(
        overview.at_risk,
        8,
        (r) =>
          el(
            "li",
            {},
            el("a", { onclick: () => openDrilldown(r.user_id, r.display_name) }, el("strong", {}, r.display_name || r.user_id)),
            el("br"),
            el("span", { class: "note" }, r.reasons.join("; ")),
          ),
        "nobody at risk",
        "learners",
      ),
    );
    $("#common-gaps").replaceChildren(
      ...capped(
        overview.common_gaps,
        6,
        (g) => el("li", {}, el("strong", {}, g.name), ` — ${g.learners} learner(s), mean severity ${fixed(g.mean_severity)}`),
        "no open gaps",
        "gaps",
      ),
    );
  }

  // --- recommendation outcomes and experiments (teacher view) ----------------------------------
  // The newest three experiments that ran, with their read-outs (admins only).
  async function experimentResults() {
    const listed = await call("/v1/experiments");
    const ran = listed.filter((e) => e.status !== "draft").slice(0, 3);
    return Promise.all(ran.map((e) => call(`/v1/experiments/${e.experiment_id}/results`)));
  }

  const rate = (x) => (x === null || x === undefined ? "–" : pct(x));

  function renderRecAnalytics() {
    const rows = [...state.recAnalytics.by_strategy, ...state.recAnalytics.by_variant];
    $("#rec-analytics").replaceChildren(
      el(
        "thead",
        {},
        el("tr", {}, ...["strategy / variant", "recommended", "clicked", "completed", "helpful", "skipped", "mastery gain"].map((h) => el("th", {}, h))),
      ),
      el(
        "tbody",
        {},
        ...(rows.length
          ? rows.map((r) =>
              el(
                "tr",
                {},
                el("td", {}, r.variant ? `${r.group} (variant ${r.variant})` : r.group),
                el("td", {}, String(r.recommended)),
                el("td", {}, rate(r.click_rate)),
                el("td", {}, rate(r.complete_rate)),
                el("td", {}, rate(r.helpful_rate)),
                el("td", {}, rate(r.skip_rate)),
                el("td", {}, r.mean_mastery_gain === null ? "–" : fixed(r.mean_mastery_gain)),
              ),
            )
          : [el("tr", {}, el("td", { colspan: "7", class: "note" }, "no recommendation outcomes yet"))]),
      ),
    );
    $("#experiments").hidden = !state.experiments.length;
    $("#experiment-arms").replaceChildren(
      el(
        "thead",
        {},
        el("tr", {}, ...["experiment", "variant", "learners", "rate", "lift (always-valid CI)", "p", "P(best)", "verdict"].map((h) => el("th", {}, h))),
      ),
      el(
        "tbody",
        {},
        ...state.experiments.flatMap((result) =>
          result.arms.map((a) =>
            el(
              "tr",
              {},
              el("td", {}, `${result.experiment.name} (${result.experiment.status})`),
              el("td", {}, a.variant),
              el("td", {}, String(a.exposed)),
              el("td", {}, pct(a.rate)),
              el("td", {}, `${fixed(a.lift)} [${fixed(a.ci_low)}, ${fixed(a.ci_high)}]`),
              el("td", {}, fixed(a.p_value, 3)),
              el("td", {}, pct(a.p_best)),
              el("td", {}, a.verdict),
            ),
          ),
        ),
      ),
    );
  }

  let drilldownUser = null;

  async function openDrilldown(userId, name) {
    drilldownUser = { userId, name };
    $("#drilldown").hidden = false;
    $("#drilldown-title").textContent = `Learner: ${name}`;
    await refreshDrilldown();
    $("#drilldown").scrollIntoView({ behavior: "smooth" });
  }

  async function refreshDrilldown() {
    if (!drilldownUser) return;
    state.drilldown = await call(
      `/v1/dashboards/learners/${encodeURIComponent(drilldownUser.userId)}?days=${TREND_DAYS}`,
    );
    renderLearner($("#drilldown-root"), state.drilldown, { own: false });
  }

  // --- operator view ---------------------------------------------------------------------------
  function renderOperator() {
    const alerts = state.fraudAlerts ? state.fraudAlerts.items : [];
    $("#fraud-alerts").replaceChildren(
      el("thead", {}, el("tr", {}, ...["when", "learner", "what", "score", "reasons", ""].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...(alerts.length
          ? alerts.map((a) =>
              el(
                "tr",
                {},
                el("td", {}, when(a.occurred_at)),
                el("td", {}, a.user_id),
                el("td", {}, `${a.subject_kind} ${a.subject_id}`),
                el("td", {}, fixed(a.score)),
                el("td", {}, a.reasons.map((r) => `${r.signal} (${fixed(r.weight)}): ${r.detail}`).join("; ")),
                el(
                  "td",
                  {},
                  el("button", { type: "button", onclick: () => review(a, "confirmed") }, "Confirm"),
                  " ",
                  el("button", { type: "button", onclick: () => review(a, "dismissed") }, "Dismiss"),
                ),
              ),
            )
          : [el("tr", {}, el("td", { colspan: "6", class: "note" }, "no alerts to review"))]),
      ),
    );
    const health = state.pipeline;
    if (!health) {
      // Offsets cover every tenant: only platform operators may read them.
      $("#pipeline").replaceChildren(
        el(
          "tbody",
          {},
          el(
            "tr",
            {},
            el(
              "td",
              { class: "note" },
              new Set(state.me.roles).has("platform_operator")
                ? "reading the consumer groups' offsets from the broker …"
                : "pipeline health is shown to platform operators",
            ),
          ),
        ),
      );
      return;
    }
    const rows = health.groups.flatMap((g) =>
      g.topics.map((t) =>
        el(
          "tr",
          {},
          el("td", {}, g.processor),
          el("td", {}, t.topic),
          el("td", {}, String(t.partitions)),
          el("td", {}, t.lag === null ? "unknown" : String(t.lag)),
          el("td", {}, `${Math.round(t.seconds_since_commit)} s ago`),
        ),
      ),
    );
    $("#pipeline").replaceChildren(
      el("thead", {}, el("tr", {}, ...["processor", "topic", "partitions", "lag", "last commit"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "5", class: "note" }, "no processor has committed yet"))]),
        // Rows gone while offsets stayed: the workers will never re-apply them.
        ...health.groups.flatMap((g) =>
          (g.problems || []).map((p) => el("tr", {}, el("td", { colspan: "5", class: "error" }, `${g.processor}: ${p}`))),
        ),
        health.broker_reachable ? null : el("tr", {}, el("td", { colspan: "5", class: "error" }, `broker: ${health.broker_error}`)),
      ),
    );
  }

  async function review(alert, decision) {
    await call(`/v1/operator/fraud-alerts/${alert.subject_kind}/${encodeURIComponent(alert.subject_id)}/review`, {
      method: "POST",
      body: { decision },
    });
    await refresh();
  }

  // --- views and polling -------------------------------------------------------------------------
  function setView(view) {
    state.view = view;
    for (const name of ["learner", "teacher", "operator"]) {
      $(`#${name}-view`).hidden = name !== view;
      $(`nav button[data-view="${name}"]`).classList.toggle("active", name === view);
    }
    refresh();
  }

  async function refresh() {
    if (!tokens() || !state.view) return;
    try {
      if (state.view === "learner") {
        state.learner = await call(`/v1/dashboards/learners/me?days=${TREND_DAYS}`);
        renderLearner($("#learner-root"), state.learner, { own: true });
      } else if (state.view === "teacher") {
        state.classes = await call("/v1/classes");
        const select = $("#class-select");
        const chosen = select.value;
        select.replaceChildren(...state.classes.map((c) => el("option", { value: c.class_id }, c.name)));
        if (chosen) select.value = chosen;
        if (select.value) {
          state.classOverview = await call(`/v1/dashboards/classes/${select.value}`);
          renderClass(state.classOverview);
          await refreshDrilldown();
        }
        state.recAnalytics = await call("/v1/analytics/recommendations");
        state.experiments = new Set(state.me.roles).has("admin") ? await experimentResults() : [];
        renderRecAnalytics();
      } else if (state.view === "operator") {
        const roles = new Set(state.me.roles);
        state.fraudAlerts = roles.has("operator")
          ? await call("/v1/operator/fraud-alerts?status=open&limit=50")
          : null;
        // The alerts first: reading every group's offsets from the broker takes seconds.
        if (state.pipeline === null) renderOperator();
        state.pipeline = roles.has("platform_operator") ? await call("/v1/operator/pipeline") : null;
        renderOperator();
      }
      state.polls += 1;
      $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (exc) {
      $("#updated").textContent = `update failed: ${exc.message}`;
    }
  }

  // --- TOTP enrolment (admin, operator: their roles count only after an MFA sign-in) -------
  const MFA_ROLES = ["admin", "operator", "platform_operator"];

  async function showMfaSetup() {
    $("#login-view").hidden = true;
    $("#mfa-setup-view").hidden = false;
    const enrolment = await call("/v1/auth/mfa/enrol", { method: "POST" });
    // The server draws the QR code as plain SVG (no script); parsed, not assigned as HTML.
    const svg = new DOMParser().parseFromString(enrolment.qr_svg, "image/svg+xml").documentElement;
    $("#mfa-qr").replaceChildren(document.importNode(svg, true));
    $("#mfa-secret").textContent = enrolment.secret;
    state.mfaSetup = { secret: enrolment.secret, uri: enrolment.provisioning_uri, confirmed: false };
  }

  async function onMfaSetup(event) {
    event.preventDefault();
    const form = event.target;
    $("#mfa-setup-error").textContent = "";
    try {
      const body = await call("/v1/auth/mfa/confirm", { method: "POST", body: { code: form.totp_code.value.trim() } });
      state.mfaSetup.confirmed = true;
      form.hidden = true;
      $("#mfa-qr").replaceChildren();
      $("#mfa-secret").textContent = "(saved in your app)";
      $("#backup-codes").replaceChildren(...body.backup_codes.map((c) => el("li", {}, c)));
      $("#mfa-done").hidden = false;
      // The password-only session ended with the confirmation: sign in again with a code.
      sessionStorage.removeItem(TOKENS_KEY);
    } catch (exc) {
      $("#mfa-setup-error").textContent = exc.message;
    }
  }

  function backToSignIn() {
    $("#mfa-setup-view").hidden = true;
    $("#login-view").hidden = false;
    const form = $("#login-form");
    (form.email.value ? form.password : form.tenant_id).focus();
  }

  async function showApp() {
    state.me = await call("/v1/users/me");
    if (!state.me.mfa_enabled && state.me.roles.some((r) => MFA_ROLES.includes(r))) {
      await showMfaSetup();
      return;
    }
    $("#login-view").hidden = true;
    $("#session").hidden = false;
    $("#tabs").hidden = false;
    $("#who").textContent = `${state.me.display_name || state.me.email} (${state.me.roles.join(", ")})`;
    const roles = new Set(state.me.roles);
    const allowed = {
      learner: roles.has("learner"),
      teacher: roles.has("teacher") || roles.has("admin"),
      operator: roles.has("operator") || roles.has("platform_operator"),
    };
    for (const [view, ok] of Object.entries(allowed)) $(`nav button[data-view="${view}"]`).hidden = !ok;
    const first = params.get("view");
    setView(first && allowed[first] ? first : Object.keys(allowed).find((v) => allowed[v]) || "learner");
    window.setInterval(refresh, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#login-form").addEventListener("submit", onLogin);
    $("#sign-out").addEventListener("click", signOut);
    $("#mfa-setup-form").addEventListener("submit", onMfaSetup);
    $("#mfa-continue").addEventListener("click", backToSignIn);
    $("#class-select").addEventListener("change", () => refresh());
    $("#heatmap-toggle").addEventListener("click", () => {
      showAllClassSkills = !showAllClassSkills;
      if (state.classOverview) renderClass(state.classOverview);
    });
    $("#drilldown-close").addEventListener("click", () => {
      drilldownUser = null;
      state.drilldown = null;
      $("#drilldown").hidden = true;
    });
    for (const button of document.querySelectorAll("nav button")) {
      button.addEventListener("click", () => setView(button.dataset.view));
    }
    const tenantInput = $("#login-form input[name=tenant_id]");
    tenantInput.addEventListener("change", () => showProviderButtons(tenantInput.value.trim()));
    if (params.get("tenant")) {
      tenantInput.value = params.get("tenant");
      showProviderButtons(tenantInput.value);
    }
    handleProviderReturn().then((handled) => {
      if (!handled) handleMailedLink();
    });
    // A second mailed link opened in the same tab changes only the fragment: no reload.
    window.addEventListener("hashchange", () => handleMailedLink());
    if (tokens()) showApp().catch(() => signOut());
  });
})();
