/* PLAT Sync operator console: plain JavaScript, no build step, no external resources.
 *
 * The page talks only to the console server's JSON API (same origin, session cookie, CSRF header on
 * every POST, "confirm": true on every mutation after the operator confirmed it in the page's own
 * modal dialog). Values are shown exactly as the API gives them: the server masks what must not be
 * shown. Every element a browser test uses carries a stable data-testid.
 */
(function () {
  "use strict";

  // ---- labels: every text of the page, in Japanese (default) and English ----------------------
  var I18N = {
    ja: {
      title: "PLAT Sync 運用コンソール",
      signedInAs: "ログイン中:",
      logout: "ログアウト",
      langToggle: "English",
      loginTitle: "ログインが必要です",
      loginText: "このコンソールを使うには、病院の Keycloak でログインしてください。",
      loginLink: "ログイン",
      health: "全体の状態",
      healthy: "正常",
      unhealthy: "要確認",
      openConflicts: "未解決の競合",
      unknown: "不明",
      link: "回線",
      linkUp: "回線を復旧",
      linkDown: "回線を切断",
      linkIsUp: "接続中",
      linkIsDown: "切断中",
      linkNone: "切断できる回線なし",
      cutSide: "切断側",
      updated: "更新",
      tabRecovery: "差分コピーツール",
      tabConflicts: "競合",
      tabDlq: "デッドレター",
      tabAudit: "操作ログ",
      role_hospital: "院内（ローカル応急措置環境）",
      role_cloud: "クラウド（運用環境）",
      node_local: "local",
      node_remote: "remote",
      mode_normal: "通常運用モード",
      mode_emergency: "応急措置モード",
      mode_recovery: "復旧措置モード",
      mode_unknown: "不明",
      modeLabel: "モード",
      since: "開始",
      until: "終了",
      hybridmode: "X-Hybridmode",
      reason: "理由",
      override: "モード設定",
      overrideManual: "手動（オペレーターが設定）",
      overrideAuto: "自動判定",
      lag: "遅延",
      processes: "プロセス",
      procUp: "稼働",
      procDown: "停止",
      running: "稼働中",
      backup: "最新のバックアップ",
      noBackup: "なし",
      ageSeconds: "秒前",
      switchMode: "モード切替",
      btn_emergency: "応急措置モードへ（運用環境が利用できない時）",
      btn_recovery: "復旧措置モードへ（運用環境が回復したら）",
      btn_normal: "通常運用モードへ（復旧完了したら）",
      btn_automatic: "自動判定に戻す",
      confirmTitle: "確認",
      confirmMode: "{node} のモードを「{mode}」に切り替えます。よろしいですか？",
      confirmAutomatic: "{node} の手動モード設定を解除し、自動判定に戻します。よろしいですか？",
      confirmLinkDown: "病院とクラウドの間の回線を切断します（組込みスタックの回線）。よろしいですか？",
      confirmLinkUp: "回線を復旧し、同期を再開します。よろしいですか？",
      confirmCopy: "選択した {n} 件を反対側へコピーします。よろしいですか？",
      confirmResolve: "競合 {id} を確認済み（解決）にします。よろしいですか？",
      confirmRetry: "選択した {n} 件のデッドレターを再送します。よろしいですか？",
      note: "メモ",
      ok: "実行する",
      cancel: "キャンセル",
      working: "処理中…",
      done: "完了",
      failed: "失敗",
      refresh: "再読込",
      recoveryTitle: "復旧時の差分一覧",
      window: "対象期間",
      windowOpen: "継続中",
      basis_last_contact: "最後に通信できた時刻から",
      basis_detection: "障害を検出した時刻から",
      selectAllCopyable: "コピー可をすべて選択",
      copySelected: "選択した行をコピー",
      selectedCount: "{n} 件選択中",
      nothingSelected: "行が選択されていません。",
      colSide: "側",
      colStoreTable: "ストア/テーブル",
      colLabel: "表示名",
      colVersion: "版",
      colEnteredAt: "入力日時",
      colApi: "API",
      colStatus: "状態",
      colReason: "理由",
      colOutcome: "コピー結果",
      status_copied: "コピー済み",
      status_copyable: "コピー可",
      status_not_copyable: "コピー不可",
      outcome_re_sent: "再送信しました",
      outcome_retried: "デッドレターを再送しました",
      outcome_already_copied: "コピー済みでした",
      outcome_refused: "コピーできません",
      copyResult: "コピー結果: {summary}",
      noEntries: "該当する記録はありません。",
      conflictsTitle: "競合（両側で同時に変更された記録）",
      show: "表示",
      statusOpen: "未解決",
      statusResolved: "解決済み",
      statusAll: "すべて",
      statusPending: "未再送",
      statusRetried: "再送済み",
      cstatus_open: "未解決",
      cstatus_resolved: "解決済み",
      colConflictId: "競合ID",
      colStore: "ストア",
      colTable: "テーブル",
      colRowId: "行ID",
      colWinner: "採用側",
      colRule: "規則",
      colDetectedOn: "検出側",
      noConflicts: "競合はありません。",
      unreachable: "接続できなかったストア: {list}",
      conflictDetail: "競合の詳細",
      colField: "項目",
      kept: "採用",
      lost: "不採用",
      versionOf: "{side} の版（{kept}）",
      conflictSummary: "{store}/{table}/{row}: {winner} の版を規則「{rule}」で採用。異なる項目: {fields}",
      resolution: "解決メモ",
      resolve: "確認済みにする（解決）",
      close: "閉じる",
      resolvedMsg: "競合 {id} を解決しました（{where}）",
      dlqTitle: "デッドレター（反映できなかった変更）",
      retrySelected: "選択した変更を再送",
      colId: "ID",
      colRoute: "経路",
      colFailed: "失敗日時",
      colKind: "種別",
      colKey: "キー",
      colBytes: "バイト",
      colError: "エラー",
      colHint: "対処",
      dstatus_pending: "未再送",
      dstatus_retried: "再送済み",
      noDeadLetters: "デッドレターはありません。",
      retriedMsg: "{n} 件を再送しました。",
      auditTitle: "操作ログ（新しい順）",
      colTime: "日時",
      colUser: "利用者",
      colAction: "操作",
      colTarget: "対象",
      colDetail: "詳細",
      colResult: "結果",
      noAudit: "記録はありません。",
      errorPrefix: "エラー",
      sessionExpired: "セッションが切れました。もう一度ログインしてください。"
    },
    en: {
      title: "PLAT Sync operator console",
      signedInAs: "Signed in:",
      logout: "Log out",
      langToggle: "日本語",
      loginTitle: "Login required",
      loginText: "Sign in with the hospital's Keycloak to use this console.",
      loginLink: "Log in",
      health: "Overall",
      healthy: "healthy",
      unhealthy: "needs attention",
      openConflicts: "Open conflicts",
      unknown: "unknown",
      link: "Link",
      linkUp: "Restore link",
      linkDown: "Cut link",
      linkIsUp: "up",
      linkIsDown: "DOWN",
      linkNone: "no cuttable link",
      cutSide: "cut side",
      updated: "Updated",
      tabRecovery: "Difference copy tool",
      tabConflicts: "Conflicts",
      tabDlq: "Dead letters",
      tabAudit: "Audit log",
      role_hospital: "hospital (local emergency environment)",
      role_cloud: "cloud (operating environment)",
      node_local: "local",
      node_remote: "remote",
      mode_normal: "Normal operation",
      mode_emergency: "Emergency mode",
      mode_recovery: "Recovery mode",
      mode_unknown: "unknown",
      modeLabel: "Mode",
      since: "Since",
      until: "Until",
      hybridmode: "X-Hybridmode",
      reason: "Reason",
      override: "Mode set",
      overrideManual: "manually (operator override)",
      overrideAuto: "automatic",
      lag: "Lag",
      processes: "Processes",
      procUp: "up",
      procDown: "down",
      running: "running",
      backup: "Latest backup",
      noBackup: "none",
      ageSeconds: "s ago",
      switchMode: "Switch mode",
      btn_emergency: "Emergency (operating environment unavailable)",
      btn_recovery: "Recovery (operating environment is back)",
      btn_normal: "Normal (recovery complete)",
      btn_automatic: "Back to automatic",
      confirmTitle: "Please confirm",
      confirmMode: "Switch {node} to \"{mode}\"?",
      confirmAutomatic: "Clear the manual mode of {node} and return to automatic?",
      confirmLinkDown: "Cut the link between the hospital and the cloud (the embedded stack's link)?",
      confirmLinkUp: "Restore the link and resume synchronisation?",
      confirmCopy: "Copy the {n} selected record(s) to the other side?",
      confirmResolve: "Mark conflict {id} as reviewed (resolved)?",
      confirmRetry: "Retry the {n} selected dead letter(s)?",
      note: "Note",
      ok: "Go ahead",
      cancel: "Cancel",
      working: "Working…",
      done: "done",
      failed: "failed",
      refresh: "Refresh",
      recoveryTitle: "Recovery difference list",
      window: "Window",
      windowOpen: "ongoing",
      basis_last_contact: "from the last contact",
      basis_detection: "from the detection",
      selectAllCopyable: "Select all copyable",
      copySelected: "Copy selected",
      selectedCount: "{n} selected",
      nothingSelected: "Nothing is selected.",
      colSide: "Side",
      colStoreTable: "Store/table",
      colLabel: "Label",
      colVersion: "Version",
      colEnteredAt: "Entered at",
      colApi: "API",
      colStatus: "Status",
      colReason: "Reason",
      colOutcome: "Copy outcome",
      status_copied: "copied",
      status_copyable: "copyable",
      status_not_copyable: "not copyable",
      outcome_re_sent: "re-sent",
      outcome_retried: "dead letter retried",
      outcome_already_copied: "already copied",
      outcome_refused: "refused",
      copyResult: "Copy: {summary}",
      noEntries: "No records.",
      conflictsTitle: "Conflicts (a record changed on both sides)",
      show: "Show",
      statusOpen: "open",
      statusResolved: "resolved",
      statusAll: "all",
      statusPending: "pending",
      statusRetried: "retried",
      cstatus_open: "open",
      cstatus_resolved: "resolved",
      colConflictId: "Conflict",
      colStore: "Store",
      colTable: "Table",
      colRowId: "Row",
      colWinner: "Kept",
      colRule: "Rule",
      colDetectedOn: "Detected on",
      noConflicts: "No conflicts.",
      unreachable: "Stores not reachable: {list}",
      conflictDetail: "Conflict",
      colField: "Field",
      kept: "kept",
      lost: "lost",
      versionOf: "{side} version ({kept})",
      conflictSummary: "{store}/{table}/{row}: the {winner} version was kept by rule '{rule}'. Differing fields: {fields}",
      resolution: "Resolution",
      resolve: "Mark reviewed (resolve)",
      close: "Close",
      resolvedMsg: "Conflict {id} resolved ({where})",
      dlqTitle: "Dead letters (changes a store refused)",
      retrySelected: "Retry selected",
      colId: "ID",
      colRoute: "Route",
      colFailed: "Failed",
      colKind: "Kind",
      colKey: "Key",
      colBytes: "Bytes",
      colError: "Error",
      colHint: "Hint",
      dstatus_pending: "pending",
      dstatus_retried: "retried",
      noDeadLetters: "No dead letters.",
      retriedMsg: "{n} retried.",
      auditTitle: "Audit log (newest first)",
      colTime: "Time",
      colUser: "User",
      colAction: "Action",
      colTarget: "Target",
      colDetail: "Detail",
      colResult: "Outcome",
      noAudit: "No entries.",
      errorPrefix: "Error",
      sessionExpired: "The session has ended. Please log in again."
    }
  };

  var LANG_KEY = "platsync-console-lang";
  var TAB_KEY = "platsync-console-tab";
  var NODE_MS = 2000;
  var SECTION_MS = 5000;
  var MODES = ["emergency", "recovery", "normal", "automatic"];

  var state = {
    lang: "ja",
    csrf: "",
    loggedIn: false,
    tab: "recovery",
    link: null,
    busy: 0,
    nodeTimer: null,
    sectionTimer: null,
    nodesLoading: false,
    sectionLoading: false,
    nodesLast: null,
    cards: {},
    recovery: { selected: new Set(), outcomes: new Map(), entries: [], last: "" },
    conflicts: { last: "", current: null, currentDoc: null },
    dlq: { selected: new Set(), letters: [], last: "" },
    audit: { last: "" }
  };

  // ---- small helpers -------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function t(key, vars) {
    var table = I18N[state.lang] || I18N.ja;
    var text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : (I18N.ja[key] || key);
    if (vars) {
      Object.keys(vars).forEach(function (name) {
        text = text.split("{" + name + "}").join(String(vars[name]));
      });
    }
    return text;
  }

  function tOr(key, fallback) {
    var table = I18N[state.lang] || I18N.ja;
    return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : fallback;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) { return; }
        if (name === "text") { node.textContent = String(value); }
        else if (name === "className") { node.className = value; }
        else if (name === "testid") { node.setAttribute("data-testid", value); }
        else { node.setAttribute(name, value === true ? "" : String(value)); }
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function shown(value) {
    if (value === null || value === undefined) { return "—"; }
    if (typeof value === "object") { return JSON.stringify(value); }
    return String(value);
  }

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function errorText(err) {
    if (err instanceof ApiError) {
      return t("errorPrefix") + " " + err.status + (err.code ? " (" + err.code + ")" : "") +
        (err.message ? ": " + err.message : "");
    }
    return t("errorPrefix") + ": " + (err && err.message ? err.message : String(err));
  }

  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = state.csrf;
      init.body = JSON.stringify(body || {});
    }
    return fetch(path, init).then(function (response) {
      return response.text().then(function (text) {
        var doc = null;
        try { doc = text ? JSON.parse(text) : null; } catch (e) { doc = null; }
        if (response.status === 401) {
          showLogin();
          throw new ApiError(401, doc && doc.error, doc && doc.message);
        }
        if (!response.ok) {
          throw new ApiError(response.status, doc && doc.error, doc && doc.message ? doc.message : text.slice(0, 300));
        }
        return doc;
      });
    });
  }

  function say(text, kind) {
    var box = $("message");
    box.textContent = text;
    box.className = "message" + (kind ? " " + kind : "");
    show(box, Boolean(text));
  }

  function setBusy(delta) {
    state.busy += delta;
    document.body.classList.toggle("busy", state.busy > 0);
  }

  // ---- the confirmation dialog (a real modal of the page) -----------------------------------
  var pendingConfirm = null;

  function confirmAction(text, withNote) {
    var dialog = $("confirm-dialog");
    $("confirm-text").textContent = text;
    $("confirm-note").value = "";
    show($("confirm-note-row"), Boolean(withNote));
    if (pendingConfirm) { pendingConfirm({ ok: false, note: "" }); }
    return new Promise(function (resolve) {
      pendingConfirm = resolve;
      if (typeof dialog.showModal === "function") { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
      $("confirm-cancel").focus();
    });
  }

  function finishConfirm(ok) {
    var dialog = $("confirm-dialog");
    var resolve = pendingConfirm;
    pendingConfirm = null;
    var note = $("confirm-note").value;
    if (dialog.open) { dialog.close(); }
    if (resolve) { resolve({ ok: ok, note: note }); }
  }

  // ---- login / session ----------------------------------------------------------------------
  function stopTimers() {
    if (state.nodeTimer) { clearInterval(state.nodeTimer); state.nodeTimer = null; }
    if (state.sectionTimer) { clearInterval(state.sectionTimer); state.sectionTimer = null; }
  }

  function showLogin() {
    var wasIn = state.loggedIn;
    state.loggedIn = false;
    stopTimers();
    show($("main"), false);
    show($("signed-in"), false);
    show($("logout-form"), false);
    show($("login-prompt"), true);
    if (wasIn) { $("login-prompt").classList.add("expired"); }
  }

  function startSession(doc) {
    state.loggedIn = true;
    state.csrf = doc.csrf || "";
    $("logout-csrf").value = state.csrf;
    var user = doc.user || {};
    $("user-name").textContent = user.name || user.username || "";
    $("user-username").textContent = user.username && user.name && user.name !== user.username ? "(" + user.username + ")" : "";
    show($("signed-in"), true);
    show($("logout-form"), true);
    show($("login-prompt"), false);
    show($("main"), true);
    selectTab(state.tab);
    refreshNodes();
    stopTimers();
    state.nodeTimer = setInterval(refreshNodes, NODE_MS);
    state.sectionTimer = setInterval(function () { refreshSection(false); }, SECTION_MS);
  }

  function loadSession() {
    api("GET", "/api/session").then(startSession).catch(function (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        showLogin();
        $("login-prompt").setAttribute("data-error", errorText(err));
      }
    });
  }

  // ---- nodes --------------------------------------------------------------------------------
  function formatAge(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    var s = Number(seconds);
    var human;
    if (s < 120) { human = Math.round(s) + " s"; }
    else if (s < 7200) { human = Math.round(s / 60) + " min"; }
    else if (s < 172800) { human = (s / 3600).toFixed(1) + " h"; }
    else { human = (s / 86400).toFixed(1) + " d"; }
    return human;
  }

  function nodeCard(name) {
    if (state.cards[name]) { return state.cards[name]; }
    var prefix = "node-" + name;
    var card = { root: null, fields: {}, buttons: {} };
    function field(key, labelKey) {
      var value = el("dd", { testid: prefix + "-" + key });
      var label = el("dt", { "data-i18n": labelKey, text: t(labelKey) });
      card.fields[key] = value;
      return [label, value];
    }
    var list = el("dl", { className: "facts" });
    [["since", "since"], ["hybridmode", "hybridmode"], ["reason", "reason"], ["override", "override"],
      ["link", "link"], ["lag", "lag"], ["processes", "processes"], ["backup", "backup"]].forEach(function (pair) {
      field(pair[0], pair[1]).forEach(function (n) { list.appendChild(n); });
    });
    card.title = el("h2", { testid: prefix + "-title" });
    card.role = el("span", { className: "role", testid: prefix + "-role" });
    card.mode = el("span", { className: "mode-code", testid: prefix + "-mode" });
    card.modeLabel = el("span", { className: "mode-label", testid: prefix + "-mode-label" });
    card.procList = el("ul", { className: "procs", testid: prefix + "-process-list" });
    var buttons = el("div", { className: "mode-buttons", testid: prefix + "-mode-buttons" });
    MODES.forEach(function (mode) {
      var button = el("button", {
        type: "button", className: "btn mode-btn mode-btn-" + mode, testid: "mode-" + name + "-" + mode,
        "data-node": name, "data-mode": mode, "data-i18n": "btn_" + mode, text: t("btn_" + mode)
      });
      button.addEventListener("click", function () { switchMode(name, mode); });
      card.buttons[mode] = button;
      buttons.appendChild(button);
    });
    card.root = el("article", { className: "node-card", testid: prefix, "data-node": name }, [
      el("header", { className: "node-head" }, [card.title, card.role]),
      el("div", { className: "mode-box" }, [card.modeLabel, card.mode]),
      list,
      card.procList,
      el("h3", { "data-i18n": "switchMode", text: t("switchMode") }),
      buttons
    ]);
    $("nodes").appendChild(card.root);
    state.cards[name] = card;
    return card;
  }

  function linkText(link) {
    if (!link || link.up === null || link.up === undefined) { return t("linkNone"); }
    var text = link.up ? t("linkIsUp") : t("linkIsDown");
    if (!link.up && link.cut_side) { text += " (" + t("cutSide") + ": " + link.cut_side + ")"; }
    return text;
  }

  function renderNodes(doc) {
    state.nodesLast = doc;
    state.link = doc.link || null;
    var link = state.link || {};
    $("nodes-time").textContent = doc.time || "";
    var health = $("overall-health");
    health.textContent = doc.healthy ? t("healthy") : t("unhealthy");
    health.className = doc.healthy ? "ok" : "bad";
    health.setAttribute("data-healthy", String(Boolean(doc.healthy)));
    $("open-conflicts").textContent = doc.open_conflicts === null || doc.open_conflicts === undefined
      ? t("unknown") : String(doc.open_conflicts);
    var linkState = $("link-state");
    linkState.textContent = linkText(link);
    linkState.setAttribute("data-up", link.up === null || link.up === undefined ? "unknown" : String(link.up));
    linkState.className = link.up === false ? "bad" : (link.up ? "ok" : "muted");
    $("link-note").textContent = link.note || "";
    $("link-down").disabled = link.up === false;
    $("link-up").disabled = link.up === true;
    var errors = $("status-errors");
    errors.textContent = "";
    (doc.errors || []).forEach(function (e) { errors.appendChild(el("li", { text: e })); });
    show(errors, (doc.errors || []).length > 0);

    (doc.nodes || []).forEach(function (node) {
      var card = nodeCard(node.node);
      var mode = node.mode || "unknown";
      card.root.setAttribute("data-mode", mode);
      card.root.setAttribute("data-override", String(Boolean(node.override)));
      card.root.setAttribute("data-hybridmode", node.hybridmode || "");
      card.root.className = "node-card mode-" + mode;
      card.title.textContent = tOr("node_" + node.node, node.node);
      card.role.textContent = tOr("role_" + node.role, node.role || "");
      card.mode.textContent = mode;
      card.modeLabel.textContent = tOr("mode_" + mode, mode);
      var f = card.fields;
      f.since.textContent = shown(node.since);
      f.hybridmode.textContent = shown(node.hybridmode);
      f.reason.textContent = shown(node.reason);
      f.override.textContent = node.override ? t("overrideManual") : t("overrideAuto");
      f.override.className = node.override ? "warn" : "";
      f.link.textContent = linkText(link);
      f.lag.textContent = shown(node.lag_ms) + " ms / " + shown(node.lag_bytes) + " B";
      var procs = node.processes || [];
      var up = procs.filter(function (p) { return p.running; }).length;
      f.processes.textContent = up + "/" + procs.length + " " + t("procUp");
      f.processes.className = up === procs.length ? "ok" : "bad";
      card.procList.textContent = "";
      procs.forEach(function (p) {
        card.procList.appendChild(el("li", {
          className: p.running ? "proc up" : "proc down", testid: "node-" + node.node + "-proc-" + p.name,
          "data-running": String(Boolean(p.running)),
          text: p.name + ": " + (p.running ? t("procUp") : t("procDown")) + (p.pid ? " (pid " + p.pid + ")" : "")
        }));
      });
      if (node.backup) {
        f.backup.textContent = shown(node.backup.name) + " (" + shown(node.backup.age_s) + " s = " +
          formatAge(node.backup.age_s) + ")";
      } else {
        f.backup.textContent = t("noBackup");
      }
      MODES.forEach(function (m) {
        var current = m === "automatic" ? !node.override : (node.override && node.mode === m);
        card.buttons[m].classList.toggle("current", Boolean(current));
      });
    });
  }

  function refreshNodes() {
    if (!state.loggedIn || state.nodesLoading) { return; }
    state.nodesLoading = true;
    api("GET", "/api/nodes").then(renderNodes).catch(function (err) {
      if (!(err instanceof ApiError && err.status === 401)) { say(errorText(err), "error"); }
    }).then(function () { state.nodesLoading = false; });
  }

  function runAction(text, withNote, request, after) {
    return confirmAction(text, withNote).then(function (answer) {
      if (!answer.ok) { return null; }
      say(t("working"), "info");
      setBusy(1);
      return request(answer.note).then(function (doc) {
        say((doc && doc.message) || t("done"), "ok");
        if (after) { after(doc); }
        return doc;
      }).catch(function (err) {
        if (!(err instanceof ApiError && err.status === 401)) { say(errorText(err), "error"); }
        return null;
      }).then(function (doc) {
        setBusy(-1);
        refreshNodes();
        return doc;
      });
    });
  }

  function switchMode(node, mode) {
    var nodeName = tOr("node_" + node, node);
    var text = mode === "automatic" ? t("confirmAutomatic", { node: nodeName })
      : t("confirmMode", { node: nodeName, mode: tOr("mode_" + mode, mode) });
    runAction(text, true, function (note) {
      return api("POST", "/api/mode", { node: node, mode: mode === "automatic" ? null : mode, note: note, confirm: true });
    });
  }

  function setLink(action) {
    runAction(action === "down" ? t("confirmLinkDown") : t("confirmLinkUp"), true, function (note) {
      return api("POST", "/api/link", { action: action, note: note, confirm: true });
    }, function (doc) {
      if (doc && doc.link) { state.link = doc.link; }
    });
  }

  // ---- sections -----------------------------------------------------------------------------
  function selectTab(name) {
    if (["recovery", "conflicts", "dlq", "audit"].indexOf(name) < 0) { name = "recovery"; }
    state.tab = name;
    try { localStorage.setItem(TAB_KEY, name); } catch (e) { /* storage may be disabled */ }
    document.querySelectorAll(".tab").forEach(function (button) {
      var active = button.getAttribute("data-tab") === name;
      button.classList.toggle("active", active);
      button.setAttribute("aria-selected", String(active));
    });
    ["recovery", "conflicts", "dlq", "audit"].forEach(function (tab) {
      show($("section-" + tab), tab === name);
    });
    refreshSection(true);
  }

  function refreshSection(force) {
    if (!state.loggedIn || (state.sectionLoading && !force)) { return; }
    var loaders = { recovery: loadRecovery, conflicts: loadConflicts, dlq: loadDeadLetters, audit: loadAudit };
    state.sectionLoading = true;
    loaders[state.tab](force).catch(function (err) {
      if (!(err instanceof ApiError && err.status === 401)) { say(errorText(err), "error"); }
    }).then(function () { state.sectionLoading = false; });
  }

  // recovery difference list
  function recoveryUrl() {
    var params = [];
    var since = $("recovery-since").value.trim();
    var until = $("recovery-until").value.trim();
    if (since) { params.push("since=" + encodeURIComponent(since)); }
    if (until) { params.push("until=" + encodeURIComponent(until)); }
    return "/api/recovery" + (params.length ? "?" + params.join("&") : "");
  }

  function loadRecovery(force) {
    return api("GET", recoveryUrl()).then(function (doc) {
      var key = JSON.stringify(doc);
      if (!force && key === state.recovery.last) { return; }
      state.recovery.last = key;
      renderRecovery(doc);
    });
  }

  function outcomeText(outcome) {
    return tOr("outcome_" + String(outcome).replace("-", "_"), outcome);
  }

  function renderRecovery(doc) {
    var r = state.recovery;
    var w = doc.window;
    var windowText = "";
    if (w) {
      windowText = t("window") + ": " + shown(w.start) + " — " + (w.end ? w.end : t("windowOpen")) +
        " (" + tOr("basis_" + w.basis, shown(w.basis)) + ")" + (w.note ? " " + w.note : "");
    }
    $("recovery-window").textContent = windowText;
    $("recovery-message").textContent = doc.message || "";
    r.entries = doc.entries || [];
    var known = new Set(r.entries.map(function (e) { return e.id; }));
    r.selected.forEach(function (id) { if (!known.has(id)) { r.selected.delete(id); } });
    var body = $("recovery-rows");
    body.textContent = "";
    r.entries.forEach(function (e) {
      var box = el("input", { type: "checkbox", testid: "recovery-select-" + e.id, "data-id": e.id });
      box.checked = r.selected.has(e.id);
      box.addEventListener("change", function () {
        if (box.checked) { r.selected.add(e.id); } else { r.selected.delete(e.id); }
        updateRecoveryCount();
      });
      var outcome = r.outcomes.get(e.id);
      var outcomeCell = el("td", { testid: "recovery-outcome-" + e.id, className: "outcome" });
      if (outcome) {
        outcomeCell.setAttribute("data-outcome", outcome.outcome);
        outcomeCell.appendChild(el("strong", { className: "outcome-" + outcome.outcome, text: outcomeText(outcome.outcome) }));
        outcomeCell.appendChild(el("code", { className: "outcome-code", text: " [" + outcome.outcome + "]" }));
        if (outcome.reason) { outcomeCell.appendChild(el("div", { className: "small", text: outcome.reason })); }
      }
      body.appendChild(el("tr", { testid: "recovery-row-" + e.id, "data-status": e.status, className: "status-" + e.status }, [
        el("td", null, [box]),
        el("td", { text: shown(e.side) }),
        el("td", { text: shown(e.store) + "/" + shown(e.table) }),
        el("td", { text: shown(e.label), title: e.row_id }),
        el("td", { text: shown(e.version) }),
        el("td", { text: shown(e.entered_at) }),
        el("td", { text: shown(e.api_id) }),
        el("td", { testid: "recovery-status-" + e.id, "data-status": e.status },
          [el("span", { className: "badge badge-" + e.status, text: tOr("status_" + e.status, e.status) })]),
        el("td", { className: "small", text: shown(e.reason) }),
        outcomeCell
      ]));
    });
    show($("recovery-empty"), r.entries.length === 0);
    updateRecoveryCount();
  }

  function updateRecoveryCount() {
    $("recovery-selected-count").textContent = t("selectedCount", { n: state.recovery.selected.size });
  }

  function selectAllCopyable() {
    var r = state.recovery;
    r.entries.forEach(function (e) { if (e.status === "copyable") { r.selected.add(e.id); } });
    document.querySelectorAll("#recovery-rows input[type=checkbox]").forEach(function (box) {
      box.checked = r.selected.has(box.getAttribute("data-id"));
    });
    updateRecoveryCount();
  }

  function copySelected() {
    var r = state.recovery;
    var ids = r.entries.map(function (e) { return e.id; }).filter(function (id) { return r.selected.has(id); });
    if (!ids.length) { say(t("nothingSelected"), "error"); return; }
    runAction(t("confirmCopy", { n: ids.length }), false, function () {
      return api("POST", "/api/recovery/copy", { ids: ids, confirm: true });
    }, function (doc) {
      var counts = {};
      ((doc && doc.results) || []).forEach(function (res) {
        r.outcomes.set(res.id, { outcome: res.outcome, reason: res.reason });
        r.selected.delete(res.id);
        counts[res.outcome] = (counts[res.outcome] || 0) + 1;
      });
      var summary = Object.keys(counts).map(function (o) { return outcomeText(o) + " " + counts[o]; }).join(", ");
      say(t("copyResult", { summary: summary }), "ok");
      if (state.tab === "recovery") { loadRecovery(true).catch(function () { /* shown by the next refresh */ }); }
    });
  }

  // conflicts
  function loadConflicts(force) {
    var status = $("conflict-status").value;
    return api("GET", "/api/conflicts?status=" + encodeURIComponent(status)).then(function (doc) {
      var key = status + JSON.stringify(doc);
      if (!force && key === state.conflicts.last) { return; }
      state.conflicts.last = key;
      renderConflicts(doc);
    });
  }

  function renderConflicts(doc) {
    var list = doc.conflicts || [];
    var body = $("conflict-rows");
    body.textContent = "";
    list.forEach(function (c) {
      var row = el("tr", {
        testid: "conflict-row-" + c.conflict_id, "data-status": c.status, tabindex: "0",
        className: "clickable-row" + (state.conflicts.current === c.conflict_id ? " selected" : "")
      }, [
        el("td", null, [el("code", { text: c.conflict_id })]),
        el("td", { text: shown(c.store) }),
        el("td", { text: shown(c.table) }),
        el("td", null, [el("code", { text: shown(c.row_id) })]),
        el("td", { text: shown(c.winner) }),
        el("td", { text: shown(c.rule) }),
        el("td", { text: Array.isArray(c.detected_on) ? c.detected_on.join(", ") : shown(c.detected_on) }),
        el("td", { testid: "conflict-status-" + c.conflict_id, text: tOr("cstatus_" + c.status, c.status) })
      ]);
      row.addEventListener("click", function () { openConflict(c.conflict_id); });
      row.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { openConflict(c.conflict_id); } });
      body.appendChild(row);
    });
    show($("conflicts-empty"), list.length === 0);
    var unreachable = doc.unreachable || [];
    $("conflicts-unreachable").textContent = unreachable.length ? t("unreachable", { list: unreachable.join(", ") }) : "";
    show($("conflicts-unreachable"), unreachable.length > 0);
  }

  function openConflict(id) {
    state.conflicts.current = id;
    document.querySelectorAll("#conflict-rows tr").forEach(function (row) {
      row.classList.toggle("selected", row.getAttribute("data-testid") === "conflict-row-" + id);
    });
    $("conflict-message").textContent = "";
    return api("GET", "/api/conflicts/" + encodeURIComponent(id)).then(renderConflictDetail).catch(function (err) {
      if (!(err instanceof ApiError && err.status === 401)) { $("conflict-message").textContent = errorText(err); }
    });
  }

  function renderConflictDetail(doc) {
    state.conflicts.currentDoc = doc;
    var detail = $("conflict-detail");
    detail.setAttribute("data-conflict", doc.conflict_id);
    detail.setAttribute("data-status", doc.status);
    $("conflict-detail-id").textContent = doc.conflict_id;
    var differing = doc.differing_fields || [];
    $("conflict-detail-summary").textContent = t("conflictSummary", {
      store: doc.store, table: doc.table, row: doc.row_id, winner: doc.winner, rule: doc.rule,
      fields: differing.join(", ")
    });
    ["local", "remote"].forEach(function (side) {
      $("conflict-" + side + "-head").textContent = t("versionOf", {
        side: side, kept: doc.winner === side ? t("kept") : t("lost")
      });
    });
    var localRow = doc.local_row || {};
    var remoteRow = doc.remote_row || {};
    var names = Object.keys(localRow).concat(Object.keys(remoteRow).filter(function (k) {
      return !Object.prototype.hasOwnProperty.call(localRow, k);
    })).sort();
    var body = $("conflict-fields");
    body.textContent = "";
    names.forEach(function (name) {
      var differs = differing.indexOf(name) >= 0;
      body.appendChild(el("tr", { testid: "conflict-field-" + name, className: differs ? "differs" : "", "data-differs": String(differs) }, [
        el("th", { text: name }),
        el("td", { className: "value" + (doc.winner === "local" ? " kept" : ""), testid: "conflict-local-" + name, text: shown(localRow[name]) }),
        el("td", { className: "value" + (doc.winner === "remote" ? " kept" : ""), testid: "conflict-remote-" + name, text: shown(remoteRow[name]) })
      ]));
    });
    $("conflict-resolution").textContent = doc.resolution ? t("resolution") + ": " + doc.resolution : "";
    $("conflict-resolve").disabled = doc.status === "resolved";
    var wasHidden = detail.hidden;
    show(detail, true);
    if (wasHidden && typeof detail.scrollIntoView === "function") { detail.scrollIntoView({ block: "nearest" }); }
  }

  function resolveConflict() {
    var doc = state.conflicts.currentDoc;
    if (!doc) { return; }
    var id = doc.conflict_id;
    var note = $("conflict-note").value;
    runAction(t("confirmResolve", { id: id }), false, function () {
      return api("POST", "/api/conflicts/" + encodeURIComponent(id) + "/resolve", { note: note, confirm: true });
    }, function (res) {
      var where = res && res.resolved_in ? res.resolved_in.map(shown).join(", ") : "";
      $("conflict-message").textContent = (res && res.message) || t("resolvedMsg", { id: id, where: where });
      $("conflict-note").value = "";
      openConflict(id);
      loadConflicts(true).catch(function () { /* shown by the next refresh */ });
    });
  }

  // dead letters
  function loadDeadLetters(force) {
    var status = $("dlq-status").value;
    return api("GET", "/api/dead-letters?status=" + encodeURIComponent(status)).then(function (doc) {
      var key = status + JSON.stringify(doc);
      if (!force && key === state.dlq.last) { return; }
      state.dlq.last = key;
      renderDeadLetters(doc);
    });
  }

  function renderDeadLetters(doc) {
    var d = state.dlq;
    d.letters = doc.dead_letters || [];
    var known = new Set(d.letters.filter(function (l) { return l.status !== "retried"; }).map(function (l) { return l.id; }));
    d.selected.forEach(function (id) { if (!known.has(id)) { d.selected.delete(id); } });
    var body = $("dlq-rows");
    body.textContent = "";
    d.letters.forEach(function (l) {
      var box = el("input", { type: "checkbox", testid: "dlq-select-" + l.id, "data-id": l.id });
      box.checked = d.selected.has(l.id);
      box.disabled = l.status === "retried";
      box.addEventListener("change", function () {
        if (box.checked) { d.selected.add(l.id); } else { d.selected.delete(l.id); }
        updateDlqCount();
      });
      var statusText = tOr("dstatus_" + l.status, l.status);
      if (l.retried && typeof l.retried === "object" && l.retried.to) { statusText += " → " + l.retried.to; }
      body.appendChild(el("tr", { testid: "dlq-row-" + l.id, "data-status": l.status, className: "status-" + l.status }, [
        el("td", null, [box]),
        el("td", null, [el("code", { text: l.id })]),
        el("td", { text: shown(l.route) }),
        el("td", { text: shown(l.failed) }),
        el("td", { text: shown(l.kind) }),
        el("td", null, [el("code", { text: shown(l.key) })]),
        el("td", { text: shown(l.bytes) }),
        el("td", { className: "small", testid: "dlq-error-" + l.id, text: shown(l.error) }),
        el("td", { className: "small", text: shown(l.hint) }),
        el("td", { testid: "dlq-status-" + l.id, "data-status": l.status, text: statusText })
      ]));
    });
    show($("dlq-empty"), d.letters.length === 0);
    updateDlqCount();
  }

  function updateDlqCount() {
    $("dlq-selected-count").textContent = t("selectedCount", { n: state.dlq.selected.size });
  }

  function retrySelected() {
    var d = state.dlq;
    var ids = d.letters.map(function (l) { return l.id; }).filter(function (id) { return d.selected.has(id); });
    if (!ids.length) { say(t("nothingSelected"), "error"); return; }
    runAction(t("confirmRetry", { n: ids.length }), false, function () {
      return api("POST", "/api/dead-letters/retry", { ids: ids, confirm: true });
    }, function (doc) {
      var retried = (doc && doc.retried) || [];
      $("dlq-message").textContent = (doc && doc.message) || t("retriedMsg", { n: retried.length });
      ids.forEach(function (id) { d.selected.delete(id); });
      loadDeadLetters(true).catch(function () { /* shown by the next refresh */ });
    });
  }

  // audit log
  function loadAudit(force) {
    return api("GET", "/api/audit?limit=200").then(function (doc) {
      var key = JSON.stringify(doc);
      if (!force && key === state.audit.last) { return; }
      state.audit.last = key;
      var entries = doc.entries || [];
      var body = $("audit-rows");
      body.textContent = "";
      entries.forEach(function (e, i) {
        body.appendChild(el("tr", { testid: "audit-row-" + i, "data-action": e.action, "data-outcome": e.outcome }, [
          el("td", { text: shown(e.time) }),
          el("td", { text: shown(e.user) }),
          el("td", { testid: "audit-action-" + i, text: shown(e.action) }),
          el("td", { text: shown(e.target) }),
          el("td", { text: shown(e.outcome) }),
          el("td", { className: "small", text: shown(e.detail) })
        ]));
      });
      show($("audit-empty"), entries.length === 0);
    });
  }

  // ---- language -----------------------------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach(function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    $("lang-toggle").textContent = t("langToggle");
    $("lang-toggle").setAttribute("data-lang", state.lang);
    if (state.nodesLast) { renderNodes(state.nodesLast); }
    updateRecoveryCount();
    updateDlqCount();
    state.recovery.last = "";
    state.conflicts.last = "";
    state.dlq.last = "";
    state.audit.last = "";
    if (state.conflicts.currentDoc && !$("conflict-detail").hidden) { renderConflictDetail(state.conflicts.currentDoc); }
    if (state.loggedIn) { refreshSection(true); }
  }

  function toggleLanguage() {
    state.lang = state.lang === "ja" ? "en" : "ja";
    try { localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* storage may be disabled */ }
    applyLanguage();
  }

  // ---- start --------------------------------------------------------------------------------
  function init() {
    try {
      var saved = localStorage.getItem(LANG_KEY);
      if (saved === "en" || saved === "ja") { state.lang = saved; }
      var tab = localStorage.getItem(TAB_KEY);
      if (tab) { state.tab = tab; }
    } catch (e) { /* storage may be disabled */ }
    applyLanguage();
    $("lang-toggle").addEventListener("click", toggleLanguage);
    $("confirm-ok").addEventListener("click", function () { finishConfirm(true); });
    $("confirm-cancel").addEventListener("click", function () { finishConfirm(false); });
    $("confirm-dialog").addEventListener("cancel", function (ev) { ev.preventDefault(); finishConfirm(false); });
    $("confirm-form").addEventListener("submit", function (ev) { ev.preventDefault(); finishConfirm(true); });
    $("link-down").addEventListener("click", function () { setLink("down"); });
    $("link-up").addEventListener("click", function () { setLink("up"); });
    document.querySelectorAll(".tab").forEach(function (button) {
      button.addEventListener("click", function () { selectTab(button.getAttribute("data-tab")); });
    });
    $("recovery-refresh").addEventListener("click", function () { refreshSection(true); });
    $("recovery-select-all").addEventListener("click", selectAllCopyable);
    $("recovery-copy").addEventListener("click", copySelected);
    $("conflict-status").addEventListener("change", function () { refreshSection(true); });
    $("conflicts-refresh").addEventListener("click", function () { refreshSection(true); });
    $("conflict-resolve").addEventListener("click", resolveConflict);
    $("conflict-close").addEventListener("click", function () {
      state.conflicts.current = null;
      state.conflicts.currentDoc = null;
      show($("conflict-detail"), false);
    });
    $("dlq-status").addEventListener("change", function () { refreshSection(true); });
    $("dlq-refresh").addEventListener("click", function () { refreshSection(true); });
    $("dlq-retry").addEventListener("click", retrySelected);
    $("audit-refresh").addEventListener("click", function () { refreshSection(true); });
    $("logout-form").addEventListener("submit", function () { $("logout-csrf").value = state.csrf; });
    loadSession();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
