/* plp chat: the messages of the channel on screen — stored ones in id order, and our own
 * sends while they wait for the server's acknowledgement. */

import * as view from "./view.js";

const list = document.getElementById("messages");
let me = () => null;
let seen = new Set(); // message ids shown
let pending = {}; // clientId -> {li, text, after}: sent, not yet acknowledged
let unconfirmed = []; // [{li, text, after}]: the connection dropped before the ack
let oldest = null;
let newest = 0; // highest message id seen
let counter = 0;

/** `getMe()` answers the signed-in user (or null before the socket said hello). */
export function init(getMe) {
  me = getMe;
}

export function oldestId() {
  return oldest;
}

/** Another channel on screen: forget this one's messages. */
export function reset() {
  view.clear();
  seen = new Set();
  pending = {};
  unconfirmed = [];
  oldest = null;
  newest = 0;
}

/** Show a stored message in id order; `live` when it just arrived (may need "N new"). */
export function add(message, clientId, live) {
  if (seen.has(message.id)) return;
  seen.add(message.id);
  if (oldest === null || message.id < oldest) oldest = message.id;
  if (message.id > newest) newest = message.id;
  const li = view.messageItem(message.author, message.text, message.createdAt);
  li.setAttribute("data-id", String(message.id));
  const mine = pending[clientId];
  if (clientId && mine) {
    delete pending[clientId];
    mine.li.remove();
  } else {
    dropUnconfirmedCopy(message);
  }
  // Keep id order whatever the arrival order (history and live frames can overlap);
  // unconfirmed messages stay at the end.
  const atEnd = view.isAtEnd();
  let before = null;
  let node = list.lastElementChild;
  while (node) {
    const nodeId = node.getAttribute("data-id");
    if (nodeId !== null && Number(nodeId) < message.id) break;
    if (!node.classList.contains("day")) before = node;
    node = node.previousElementSibling;
  }
  list.insertBefore(li, before);
  if (!live) return;
  view.decorate();
  view.showEmptyState(true);
  const byMe = me() && message.author.id === me().id;
  if (atEnd || byMe) {
    view.scrollToEnd();
  } else if (before === null) {
    view.noteUnseen();
  }
}

// A send whose acknowledgement was lost with the connection may still have been stored.
// When a stored message turns up (history reloaded after reconnecting, or live) by me,
// with the same text, and newer than every message seen when that send started, it is
// that send: the local "not confirmed" copy goes, so the message does not show twice.
// Message ids (not clocks) order it, so a wrong client clock cannot confuse the rule.
function dropUnconfirmedCopy(message) {
  if (!me() || message.author.id !== me().id) return;
  const i = unconfirmed.findIndex((c) => c.text === message.text && message.id > c.after);
  if (i < 0) return;
  unconfirmed[i].li.remove();
  unconfirmed.splice(i, 1);
}

/** Show our own send as pending; answers the clientId to send with it. */
export function addPending(text) {
  counter += 1;
  const clientId = "c" + Date.now().toString(36) + "-" + counter;
  const li = view.messageItem(me(), text, null);
  li.classList.add("pending");
  li.setAttribute("data-client-id", clientId);
  pending[clientId] = { li, text, after: newest };
  list.appendChild(li);
  view.decorate();
  view.showEmptyState(true);
  view.scrollToEnd();
  return clientId;
}

/** Mark a pending send as failed with a note; false when there was no such send. */
export function failPending(clientId, note) {
  const entry = pending[clientId];
  if (!entry) return false;
  delete pending[clientId];
  entry.li.classList.remove("pending");
  entry.li.classList.add("failed");
  const small = document.createElement("small");
  small.className = "danger-text";
  small.textContent = " (" + note + ")";
  entry.li.appendChild(small);
  return true;
}

/** The connection dropped: every pending send has an unknown outcome (see add). */
export function connectionLost() {
  for (const clientId of Object.keys(pending)) {
    const entry = pending[clientId];
    if (failPending(clientId, "not confirmed: connection lost")) unconfirmed.push(entry);
  }
}

export function remove(messageId) {
  const li = list.querySelector('li[data-id="' + Number(messageId) + '"]');
  if (!li) return;
  li.remove();
  seen.delete(Number(messageId));
  view.decorate();
  view.showEmptyState(true);
}
