/* plp chat page: channel list, history, live messages, typing, presence, reconnect.
 * Protocol: docs/protocol.md. Every visible channel is joined, so unread counts arrive;
 * the one on screen is `state.current`. Text only ever goes in with textContent. */

import { getJson, sendJson, whenSignedOut } from "./api.js";
import * as view from "./view.js";
import * as unread from "./unread.js";
import { setDrawer } from "./drawer.js";
import * as channelAdmin from "./channels.js";
import * as presence from "./presence.js";
import * as messages from "./messages.js";
import * as groups from "./groups.js";

const root = document.getElementById("chat");
// Who the page was rendered for, until the socket's hello says it again.
const pageUser = {
  id: Number(root.getAttribute("data-user-id")),
  role: root.getAttribute("data-role")
};
const LOGIN_URL = root.getAttribute("data-login") || "/login?next=%2Fchat";
const WS_PATH = root.getAttribute("data-ws") || "/ws/chat";
const HISTORY_LIMIT = 50;
const TYPING_SEND_EVERY = 1500; // ms between our typing frames (server drops >1/s)
const BACKOFF_MIN = 1000;
const BACKOFF_MAX = 30000;
const PLACEHOLDER = "Enter sends, Shift+Enter for a new line";

const els = {
  channels: document.getElementById("channels"),
  messages: document.getElementById("messages"),
  status: document.getElementById("status"),
  title: document.getElementById("channel-title"),
  older: document.getElementById("older"),
  form: document.getElementById("composer"),
  box: document.getElementById("message"),
  send: document.getElementById("send")
};

const state = {
  me: null,
  channels: [], // [{id, name, kind, description, createdBy, classId}]
  current: null, // channel id on screen
  joined: new Set(), // channel ids the socket has joined
  asked: new Set(), // channel ids a join was sent for on this socket
  socket: null,
  open: false,
  backoff: BACKOFF_MIN,
  reconnectTimer: null,
  leaving: false,
  lastTypingSent: 0,
  connectedBefore: false
};

function setStatus(text, offline) {
  els.status.textContent = text;
  els.status.classList.toggle("banner", !!offline);
  root.classList.toggle("offline", !!offline);
}

function goToLogin() {
  state.leaving = true;
  window.location.assign(LOGIN_URL);
}
whenSignedOut(goToLogin);
messages.init(() => state.me);

function channelById(id) {
  return state.channels.find((c) => c.id === id) || null;
}

// ---------------------------------------------------------------- channel list
function readServerRenderedChannels() {
  groups.readServerRendered(els.channels);
  return Array.from(els.channels.querySelectorAll("button[data-channel]")).map((b) => ({
    id: Number(b.getAttribute("data-channel")),
    name: b.textContent.trim().replace(/^#/, ""),
    kind: b.getAttribute("data-kind"),
    description: b.getAttribute("title") || "",
    createdBy: null,
    classId: b.getAttribute("data-class") ? Number(b.getAttribute("data-class")) : null
  }));
}

function renderChannels() {
  groups.render(els.channels, state.channels, channelItem);
  channelAdmin.renderControls(state.me, channelById(state.current));
}

function channelItem(channel) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.setAttribute("data-channel", String(channel.id));
  button.setAttribute("data-kind", channel.kind);
  button.setAttribute("data-class", channel.classId === null ? "" : String(channel.classId));
  button.title = channel.description || "";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = "#" + channel.name;
  button.appendChild(name);
  const badge = unread.unreadBadge(channel.id);
  if (badge) button.appendChild(badge);
  if (channel.id === state.current) button.setAttribute("aria-current", "true");
  li.appendChild(button);
  return li;
}

async function loadChannels() {
  const [data, classes] = await Promise.all([getJson("/api/channels"), getJson("/api/classes")]);
  if (!data) return;
  if (classes) groups.setClasses(classes.classes);
  state.channels = data.channels.map((c) => ({
    id: c.id,
    name: c.name,
    kind: c.kind,
    description: c.description,
    createdBy: c.createdBy,
    classId: c.classId === undefined ? null : c.classId
  }));
  if (state.current !== null && !channelById(state.current)) selectChannel(null);
  renderChannels();
  joinAll();
}

els.channels.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-channel]");
  if (!button) return;
  selectChannel(Number(button.getAttribute("data-channel")));
  setDrawer(false);
});

function selectChannel(wanted) {
  let id = wanted;
  if (!channelById(id)) id = state.channels.length ? state.channels[0].id : null;
  if (id === null) {
    state.current = null;
    els.title.textContent = "No channels";
    clearChannelView();
    renderChannels();
    return;
  }
  if (state.current === id) return;
  state.current = id;
  if (window.location.hash !== "#" + id) window.history.replaceState(null, "", "#" + id);
  els.title.textContent = "#" + channelById(id).name;
  unread.clearUnread(id);
  clearChannelView();
  renderChannels();
  presence.show(id);
  updateComposer();
  loadHistory(id, null);
  join(id);
}

function clearChannelView() {
  messages.reset();
  presence.clearTyping();
  els.older.hidden = true;
}

/** The channel is gone for this user: deleted, or they left or were removed from its class.
 * If it was on screen, say so and show another one. */
function forgetChannel(id, removed) {
  const gone = channelById(id); // null when a reload of the list dropped it already
  state.channels = state.channels.filter((c) => c.id !== id);
  state.joined.delete(id);
  state.asked.delete(id);
  presence.forget(id);
  unread.clearUnread(id);
  if (state.current === id && gone) {
    state.current = null;
    selectChannel(null);
    setStatus(
      removed
        ? "#" + gone.name + " is no longer yours: you left or were removed from its class."
        : "#" + gone.name + " was deleted."
    );
  }
  renderChannels();
}

// ---------------------------------------------------------------- history
async function loadHistory(channelId, before) {
  let url = "/api/channels/" + channelId + "/messages?limit=" + HISTORY_LIMIT;
  if (before) url += "&before=" + before;
  const data = await getJson(url);
  if (!data || state.current !== channelId) return;
  const list = els.messages;
  const fromBottom = list.scrollHeight - list.scrollTop;
  for (const m of data.messages) messages.add(m, null, false);
  view.decorate();
  view.showEmptyState(true);
  if (before) {
    list.scrollTop = list.scrollHeight - fromBottom; // keep the reader's place
  } else {
    view.scrollToEnd();
  }
  if (before || data.messages.length) els.older.hidden = data.messages.length < HISTORY_LIMIT;
}

els.older.addEventListener("click", () => {
  if (state.current !== null && messages.oldestId() !== null) {
    loadHistory(state.current, messages.oldestId());
  }
});

function removeMessage(channelId, messageId) {
  if (channelId === state.current) messages.remove(messageId);
}

async function deleteMessage(messageId) {
  const channelId = state.current;
  if (!window.confirm("Delete this message for everyone?")) return;
  const answer = await sendJson(
    "DELETE",
    "/api/channels/" + channelId + "/messages/" + messageId
  );
  if (answer.ok) {
    removeMessage(channelId, messageId); // the message_deleted frame may come first or later
  } else {
    setStatus((answer.data && answer.data.message) || "Could not delete the message.");
  }
}

// The rule of plp/chat/moderation.py: the author, an admin, or a class teacher of the
// channel's class (whose account is a teacher's or an admin's). The server checks it again.
function mayDelete(authorId) {
  const me = state.me || pageUser;
  if (!me) return false;
  if (me.role === "admin" || authorId === me.id) return true;
  const channel = channelById(state.current);
  return !!channel && me.role === "teacher" && groups.teaches(channel.classId);
}

view.setDeletePolicy(mayDelete, deleteMessage);

// ---------------------------------------------------------------- composer
function canPost() {
  const channel = channelById(state.current);
  if (!channel || !state.me) return false;
  return channel.kind !== "announcement" || state.me.role !== "student";
}

function ready() {
  return state.open && state.joined.has(state.current);
}

function updateComposer() {
  const can = ready() && canPost();
  els.box.disabled = !can;
  els.send.disabled = !can;
  const channel = channelById(state.current);
  els.box.placeholder =
    channel && state.me && !canPost() ? "Announcements: only teachers post here." : PLACEHOLDER;
}

function sendMessage() {
  const text = els.box.value.trim();
  if (!text || !ready()) return;
  if (text.length > 2000) {
    setStatus("Messages are at most 2000 characters.");
    return;
  }
  const clientId = messages.addPending(text);
  send({ type: "send", channel: state.current, text, clientId });
  els.box.value = "";
}

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  sendMessage();
});

els.box.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage();
  }
});

els.box.addEventListener("input", () => {
  const now = Date.now();
  if (!ready() || !els.box.value.trim()) return;
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

function join(id) {
  if (!state.open || id === null || state.asked.has(id)) return;
  state.asked.add(id);
  send({ type: "join", channel: id });
}

function joinAll() {
  join(state.current);
  for (const channel of state.channels) join(channel.id);
}

function connect() {
  state.reconnectTimer = null;
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + window.location.host + WS_PATH);
  state.socket = socket;
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    handleFrame(frame);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    state.open = false;
    state.joined.clear();
    state.asked.clear();
    // Who is online is unknown while disconnected: show no one rather than stale names.
    presence.clearAll();
    updateComposer();
    messages.connectionLost();
    if (state.leaving) return;
    if (event.code === 4001) {
      setStatus("Your session has ended; please sign in again.", true);
      goToLogin();
      return;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const delay = state.backoff + Math.floor(Math.random() * 500);
  state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX);
  setStatus("Connection lost — reconnecting in " + Math.round(delay / 1000) + " s…", true);
  // A handshake refused with 401 looks like any failed connection to a browser, so ask
  // the API whether we are still signed in before trying again.
  state.reconnectTimer = setTimeout(async () => {
    const data = await getJson("/api/users/me");
    if (state.leaving) return;
    if (data) {
      connect();
    } else {
      scheduleReconnect();
    }
  }, delay);
}

function onHello(user) {
  state.me = user;
  state.open = true;
  state.backoff = BACKOFF_MIN;
  const name = user.displayName || user.username;
  // A name may end in a full stop already ("Amir K."): no second one.
  setStatus("Connected as " + name + (name.endsWith(".") ? "" : "."));
  renderChannels();
  view.decorate(); // delete buttons depend on who I am
  joinAll();
  if (state.connectedBefore) {
    // After a reconnect: live frames flow again; fetch what was missed meanwhile.
    if (state.current !== null) loadHistory(state.current, null);
    loadChannels();
  }
  state.connectedBefore = true;
}

function onMessage(frame) {
  const channel = channelById(frame.channel);
  const looking = frame.channel === state.current && !document.hidden;
  if (channel) unread.maybeNotify(frame.message, channel.name, state.me, looking);
  if (frame.channel !== state.current) {
    if (!state.me || frame.message.author.id !== state.me.id) {
      unread.addUnread(frame.channel);
      renderChannels();
    }
    return;
  }
  presence.stopTyping(frame.message.author.id);
  messages.add(frame.message, frame.clientId || null, true);
}

function handleFrame(frame) {
  switch (frame.type) {
    case "hello":
      onHello(frame.user);
      break;
    case "joined":
      state.joined.add(frame.channel);
      if (state.me) presence.setOnline(frame.channel, state.me, true);
      updateComposer();
      break;
    case "presence":
      presence.setOnline(frame.channel, frame.user, frame.status === "online");
      break;
    case "typing":
      if (frame.channel === state.current) presence.showTyping(frame.user);
      break;
    case "message":
      onMessage(frame);
      break;
    case "message_deleted":
      removeMessage(frame.channel, frame.message);
      break;
    case "channel_deleted":
      forgetChannel(frame.channel, false);
      break;
    case "channel_removed":
      forgetChannel(frame.channel, true);
      loadChannels(); // what is left, and the classes (and so the teaching) as they are now
      break;
    case "error":
      if (!(frame.ref && messages.failPending(frame.ref, "not sent: " + frame.message))) {
        setStatus(frame.message);
      }
      break;
    default:
      break; // left, pong, and frames this page does not know yet
  }
}

window.addEventListener("pagehide", () => {
  state.leaving = true;
  if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
  if (state.socket) state.socket.close(1000, "page closed");
});

window.addEventListener("hashchange", () => {
  const id = Number(window.location.hash.slice(1));
  if (id && id !== state.current) selectChannel(id);
});

// Channels made or deleted elsewhere reach this page when it is looked at again.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.open) loadChannels();
});

channelAdmin.setUp(
  () => channelById(state.current),
  async (channel) => {
    await loadChannels();
    selectChannel(channel.id);
  },
  (id) => forgetChannel(id, false)
);

// ---------------------------------------------------------------- start
state.channels = readServerRenderedChannels();
selectChannel(Number(window.location.hash.slice(1)) || null);
connect();
loadChannels();
