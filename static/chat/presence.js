/* plp chat: who is online in each joined channel, and who is typing in the one on screen. */

const TYPING_SHOW_FOR = 3000; // ms a "is typing" note stays up

const presenceList = document.getElementById("presence");
const typingLine = document.getElementById("typing");
const online = new Map(); // channel id -> Map(user id -> user)
let typers = {}; // user id -> {name, timer}, for the channel on screen
let shown = null; // the channel on screen

/** Show the Online list of this channel. */
export function show(channelId) {
  shown = channelId;
  presenceList.replaceChildren();
  for (const [id, user] of online.get(channelId) || new Map()) {
    const li = document.createElement("li");
    li.textContent = user.displayName || user.username;
    li.setAttribute("data-user", String(id));
    presenceList.appendChild(li);
  }
}

export function setOnline(channelId, user, isOnline) {
  if (!online.has(channelId)) online.set(channelId, new Map());
  if (isOnline) {
    online.get(channelId).set(user.id, user);
  } else {
    online.get(channelId).delete(user.id);
    if (channelId === shown) stopTyping(user.id);
  }
  if (channelId === shown) show(shown);
}

export function forget(channelId) {
  online.delete(channelId);
}

/** Disconnected: who is online is unknown, so show no one rather than stale names. */
export function clearAll() {
  online.clear();
  show(shown);
}

function renderTyping() {
  const names = Object.keys(typers).map((id) => typers[id].name);
  if (!names.length) {
    typingLine.textContent = "";
  } else if (names.length === 1) {
    typingLine.textContent = names[0] + " is typing…";
  } else {
    typingLine.textContent = names.join(", ") + " are typing…";
  }
}

export function showTyping(user) {
  const entry = typers[user.id];
  if (entry) clearTimeout(entry.timer);
  typers[user.id] = {
    name: user.displayName || user.username,
    timer: setTimeout(() => {
      delete typers[user.id];
      renderTyping();
    }, TYPING_SHOW_FOR)
  };
  renderTyping();
}

export function stopTyping(userId) {
  const entry = typers[userId];
  if (!entry) return;
  clearTimeout(entry.timer);
  delete typers[userId];
  renderTyping();
}

export function clearTyping() {
  for (const id of Object.keys(typers)) clearTimeout(typers[id].timer);
  typers = {};
  renderTyping();
}
