/* plp chat page: channel list, history, live messages, typing, presence, reconnect.
 * Protocol: docs/protocol.md. Text is only ever inserted with textContent (no innerHTML). */
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root) return;

  var LOGIN_URL = root.getAttribute("data-login") || "/login?next=%2Fchat";
  var WS_PATH = root.getAttribute("data-ws") || "/ws/chat";
  var HISTORY_LIMIT = 50;
  var TYPING_SEND_EVERY = 1500; // ms between our typing frames (server drops >1/s)
  var TYPING_SHOW_FOR = 3000; // ms a "is typing" note stays up
  var BACKOFF_MIN = 1000;
  var BACKOFF_MAX = 30000;

  var els = {
    channels: document.getElementById("channels"),
    messages: document.getElementById("messages"),
    presence: document.getElementById("presence"),
    status: document.getElementById("status"),
    typing: document.getElementById("typing"),
    title: document.getElementById("channel-title"),
    older: document.getElementById("older"),
    form: document.getElementById("composer"),
    box: document.getElementById("message"),
    send: document.getElementById("send")
  };

  var state = {
    me: null,
    channels: [], // [{id, name, kind, description}]
    current: null, // channel id
    joined: null, // channel id the socket has joined
    socket: null,
    open: false,
    backoff: BACKOFF_MIN,
    reconnectTimer: null,
    leaving: false,
    online: {}, // user id -> user, for the current channel
    typers: {}, // user id -> {name, timer}
    lastTypingSent: 0,
    seen: {}, // message id -> true, for the current channel
    pending: {}, // clientId -> {li, text, after}: sent, not yet acknowledged
    unconfirmed: [], // [{li, text, after}]: the connection dropped before the ack
    oldest: null,
    newest: 0, // highest message id seen in the current channel
    counter: 0,
    connectedBefore: false
  };

  function setStatus(text) {
    els.status.textContent = text;
  }

  function goToLogin() {
    state.leaving = true;
    window.location.assign(LOGIN_URL);
  }

  function channelById(id) {
    for (var i = 0; i < state.channels.length; i++) {
      if (state.channels[i].id === id) return state.channels[i];
    }
    return null;
  }

  // ---------------------------------------------------------------- channel list
  function readServerRenderedChannels() {
    var buttons = els.channels.querySelectorAll("button[data-channel]");
    var list = [];
    for (var i = 0; i < buttons.length; i++) {
      list.push({
        id: Number(buttons[i].getAttribute("data-channel")),
        name: buttons[i].textContent.replace(/^#/, ""),
        kind: buttons[i].getAttribute("data-kind"),
        description: buttons[i].getAttribute("title") || ""
      });
    }
    return list;
  }

  function renderChannels() {
    els.channels.replaceChildren();
    state.channels.forEach(function (channel) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.setAttribute("data-channel", String(channel.id));
      button.setAttribute("data-kind", channel.kind);
      button.title = channel.description || "";
      button.textContent = "#" + channel.name;
      if (channel.id === state.current) button.setAttribute("aria-current", "true");
      li.appendChild(button);
      els.channels.appendChild(li);
    });
  }

  function loadChannels() {
    return fetchJson("/api/channels").then(function (data) {
      if (!data) return;
      state.channels = data.channels.map(function (c) {
        return { id: c.id, name: c.name, kind: c.kind, description: c.description };
      });
      renderChannels();
    });
  }

  els.channels.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-channel]");
    if (!button) return;
    selectChannel(Number(button.getAttribute("data-channel")));
  });

  function selectChannel(id) {
    if (!channelById(id)) {
      id = state.channels.length ? state.channels[0].id : null;
    }
    if (id === null) return;
    if (state.current === id && state.joined === id) return;
    state.current = id;
    if (window.location.hash !== "#" + id) {
      window.history.replaceState(null, "", "#" + id);
    }
    var channel = channelById(id);
    els.title.textContent = "#" + channel.name;
    renderChannels();
    clearChannelView();
    updateComposer();
    loadHistory(id, null);
    joinCurrent();
  }

  function clearChannelView() {
    els.messages.replaceChildren();
    state.seen = {};
    state.pending = {};
    state.unconfirmed = [];
    state.oldest = null;
    state.newest = 0;
    state.online = {};
    Object.keys(state.typers).forEach(function (id) {
      clearTimeout(state.typers[id].timer);
    });
    state.typers = {};
    renderPresence();
    renderTyping();
    els.older.hidden = true;
  }

  // ---------------------------------------------------------------- history
  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          goToLogin();
          return null;
        }
        if (!response.ok) return null;
        return response.json();
      })
      .catch(function () {
        return null;
      });
  }

  function loadHistory(channelId, before) {
    var url = "/api/channels/" + channelId + "/messages?limit=" + HISTORY_LIMIT;
    if (before) url += "&before=" + before;
    return fetchJson(url).then(function (data) {
      if (!data || state.current !== channelId) return;
      var messages = data.messages;
      messages.forEach(function (m) {
        addMessage(m, null);
      });
      if (!before) scrollToEnd();
      if (before || messages.length) els.older.hidden = messages.length < HISTORY_LIMIT;
    });
  }

  els.older.addEventListener("click", function () {
    if (state.current !== null && state.oldest !== null) loadHistory(state.current, state.oldest);
  });

  function formatTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function messageItem(author, text, createdAt) {
    var li = document.createElement("li");
    var who = document.createElement("span");
    who.className = "author";
    who.textContent = author.displayName || author.username;
    who.title = "@" + author.username + " (" + author.role + ")";
    var time = document.createElement("time");
    time.className = "time";
    if (createdAt) {
      time.dateTime = createdAt;
      time.textContent = formatTime(createdAt);
    }
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.appendChild(who);
    li.appendChild(body);
    li.appendChild(time);
    return li;
  }

  function addMessage(message, clientId) {
    if (state.seen[message.id]) return;
    state.seen[message.id] = true;
    if (state.oldest === null || message.id < state.oldest) state.oldest = message.id;
    if (message.id > state.newest) state.newest = message.id;
    var li = messageItem(message.author, message.text, message.createdAt);
    li.setAttribute("data-id", String(message.id));
    var pending = clientId ? state.pending[clientId] : null;
    if (pending) {
      delete state.pending[clientId];
      pending.li.remove();
    } else {
      dropUnconfirmedCopy(message);
    }
    // Keep id order whatever the arrival order (history and live frames can overlap);
    // unconfirmed messages stay at the end.
    var atEnd = isScrolledToEnd();
    var before = null;
    var node = els.messages.lastElementChild;
    while (node) {
      var nodeId = node.getAttribute("data-id");
      if (nodeId !== null && Number(nodeId) < message.id) break;
      before = node;
      node = node.previousElementSibling;
    }
    els.messages.insertBefore(li, before);
    if (atEnd && before === null) scrollToEnd();
  }

  // A send whose acknowledgement was lost with the connection may still have been stored.
  // When a stored message turns up (history reloaded after reconnecting, or live) by me,
  // with the same text, and newer than every message seen when that send started, it is
  // that send: the local "not confirmed" copy goes, so the message does not show twice.
  // Message ids (not clocks) order it, so a wrong client clock cannot confuse the rule.
  function dropUnconfirmedCopy(message) {
    if (!state.me || message.author.id !== state.me.id) return;
    for (var i = 0; i < state.unconfirmed.length; i++) {
      var copy = state.unconfirmed[i];
      if (copy.text === message.text && message.id > copy.after) {
        state.unconfirmed.splice(i, 1);
        copy.li.remove();
        return;
      }
    }
  }

  function isScrolledToEnd() {
    var m = els.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 40;
  }

  function scrollToEnd() {
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  // ---------------------------------------------------------------- presence, typing
  function renderPresence() {
    els.presence.replaceChildren();
    Object.keys(state.online).forEach(function (id) {
      var user = state.online[id];
      var li = document.createElement("li");
      li.textContent = user.displayName || user.username;
      li.setAttribute("data-user", id);
      els.presence.appendChild(li);
    });
  }

  function renderTyping() {
    var names = Object.keys(state.typers).map(function (id) {
      return state.typers[id].name;
    });
    if (!names.length) {
      els.typing.textContent = "";
    } else if (names.length === 1) {
      els.typing.textContent = names[0] + " is typing…";
    } else {
      els.typing.textContent = names.join(", ") + " are typing…";
    }
  }

  function showTyping(user) {
    var entry = state.typers[user.id];
    if (entry) clearTimeout(entry.timer);
    state.typers[user.id] = {
      name: user.displayName || user.username,
      timer: setTimeout(function () {
        delete state.typers[user.id];
        renderTyping();
      }, TYPING_SHOW_FOR)
    };
    renderTyping();
  }

  function stopTyping(userId) {
    var entry = state.typers[userId];
    if (!entry) return;
    clearTimeout(entry.timer);
    delete state.typers[userId];
    renderTyping();
  }

  // ---------------------------------------------------------------- composer
  function canPost() {
    var channel = channelById(state.current);
    if (!channel || !state.me) return false;
    return channel.kind !== "announcement" || state.me.role !== "student";
  }

  function updateComposer() {
    var ready = state.open && state.joined === state.current && canPost();
    els.box.disabled = !ready;
    els.send.disabled = !ready;
    var channel = channelById(state.current);
    if (channel && state.me && !canPost()) {
      els.box.placeholder = "Announcements: only teachers post here.";
    } else {
      els.box.placeholder = "Write a message; Enter sends, Shift+Enter for a new line";
    }
  }

  function sendMessage() {
    var text = els.box.value.trim();
    if (!text || !state.open || state.joined !== state.current) return;
    if (text.length > 2000) {
      setStatus("Messages are at most 2000 characters.");
      return;
    }
    state.counter += 1;
    var clientId = "c" + Date.now().toString(36) + "-" + state.counter;
    var li = messageItem(state.me, text, null);
    li.classList.add("pending");
    li.setAttribute("data-client-id", clientId);
    state.pending[clientId] = { li: li, text: text, after: state.newest };
    els.messages.appendChild(li);
    scrollToEnd();
    send({ type: "send", channel: state.current, text: text, clientId: clientId });
    els.box.value = "";
  }

  els.form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendMessage();
  });

  els.box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });

  els.box.addEventListener("input", function () {
    var now = Date.now();
    if (!state.open || state.joined !== state.current || !els.box.value.trim()) return;
    if (now - state.lastTypingSent < TYPING_SEND_EVERY) return;
    state.lastTypingSent = now;
    send({ type: "typing", channel: state.current });
  });

  // ---------------------------------------------------------------- socket
  function send(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(frame));
    }
  }

  function joinCurrent() {
    if (!state.open || state.current === null) return;
    if (state.joined !== null && state.joined !== state.current) {
      send({ type: "leave", channel: state.joined });
    }
    state.joined = null;
    updateComposer();
    send({ type: "join", channel: state.current });
  }

  function connect() {
    state.reconnectTimer = null;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + WS_PATH);
    state.socket = socket;
    setStatus("Connecting…");
    socket.addEventListener("message", function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      handleFrame(frame);
    });
    socket.addEventListener("close", function (event) {
      if (state.socket !== socket) return;
      state.socket = null;
      state.open = false;
      state.joined = null;
      updateComposer();
      Object.keys(state.pending).forEach(function (clientId) {
        var entry = state.pending[clientId];
        // Unknown outcome: it may have been stored just before the drop (see addMessage).
        if (markPendingFailed(clientId, "not confirmed: connection lost")) {
          state.unconfirmed.push(entry);
        }
      });
      if (state.leaving) return;
      if (event.code === 4001) {
        setStatus("Your session has ended; please sign in again.");
        goToLogin();
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    var delay = state.backoff + Math.floor(Math.random() * 500);
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX);
    setStatus("Disconnected; reconnecting in " + Math.round(delay / 1000) + " s…");
    // A handshake refused with 401 looks like any failed connection to a browser, so ask
    // the API whether we are still signed in before trying again.
    state.reconnectTimer = setTimeout(function () {
      fetchJson("/api/users/me").then(function (data) {
        if (state.leaving) return;
        if (data) {
          connect();
        } else {
          scheduleReconnect();
        }
      });
    }, delay);
  }

  function markPendingFailed(clientId, message) {
    var entry = state.pending[clientId];
    if (!entry) return false;
    var li = entry.li;
    delete state.pending[clientId];
    li.classList.remove("pending");
    li.classList.add("failed");
    var note = document.createElement("small");
    note.className = "danger-text";
    note.textContent = " (" + message + ")";
    li.appendChild(note);
    return true;
  }

  function handleFrame(frame) {
    switch (frame.type) {
      case "hello":
        state.me = frame.user;
        state.open = true;
        state.backoff = BACKOFF_MIN;
        setStatus("Connected as " + (frame.user.displayName || frame.user.username) + ".");
        joinCurrent();
        if (state.connectedBefore && state.current !== null) {
          // After a reconnect: live frames flow again; fetch what was missed meanwhile.
          loadHistory(state.current, null);
        }
        state.connectedBefore = true;
        break;
      case "joined":
        if (frame.channel === state.current) {
          state.joined = frame.channel;
          if (state.me) state.online[state.me.id] = state.me;
          renderPresence();
          updateComposer();
        }
        break;
      case "left":
        break;
      case "presence":
        if (frame.channel !== state.current) break;
        if (frame.status === "online") {
          state.online[frame.user.id] = frame.user;
        } else {
          delete state.online[frame.user.id];
          stopTyping(frame.user.id);
        }
        renderPresence();
        break;
      case "typing":
        if (frame.channel === state.current) showTyping(frame.user);
        break;
      case "message":
        if (frame.channel !== state.current) break;
        stopTyping(frame.message.author.id);
        addMessage(frame.message, frame.clientId || null);
        break;
      case "channel_deleted":
        state.channels = state.channels.filter(function (c) {
          return c.id !== frame.channel;
        });
        if (state.current === frame.channel) {
          state.current = null;
          state.joined = null;
          setStatus("That channel was deleted.");
          selectChannel(state.channels.length ? state.channels[0].id : null);
        }
        renderChannels();
        break;
      case "error":
        if (!(frame.ref && markPendingFailed(frame.ref, "not sent: " + frame.message))) {
          setStatus(frame.message);
        }
        break;
      case "pong":
        break;
      default:
        break;
    }
  }

  window.addEventListener("pagehide", function () {
    state.leaving = true;
    if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
    if (state.socket) state.socket.close(1000, "page closed");
  });

  window.addEventListener("hashchange", function () {
    var id = Number(window.location.hash.slice(1));
    if (id && id !== state.current) selectChannel(id);
  });

  // ---------------------------------------------------------------- start
  state.channels = readServerRenderedChannels();
  var wanted = Number(window.location.hash.slice(1)) || null;
  selectChannel(wanted);
  connect();
  loadChannels().then(function () {
    if (state.current !== null && !channelById(state.current)) selectChannel(null);
  });
})();
