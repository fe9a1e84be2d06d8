/* plp chat: unread counts (per channel and in the tab title) and mention notifications
 * (permission asked for only after a click on "Notify me of mentions"). */

const baseTitle = document.title;
const unread = new Map(); // channel id -> messages not yet seen there
const notifyButton = document.getElementById("notify");

export function unreadCount(channelId) {
  return unread.get(channelId) || 0;
}

export function addUnread(channelId) {
  unread.set(channelId, unreadCount(channelId) + 1);
  renderTitle();
}

export function clearUnread(channelId) {
  unread.delete(channelId);
  renderTitle();
}

function renderTitle() {
  let total = 0;
  unread.forEach((n) => (total += n));
  document.title = total ? "(" + total + ") " + baseTitle : baseTitle;
}

/** A badge for a channel button, or null when nothing is unread there. */
export function unreadBadge(channelId) {
  const count = unreadCount(channelId);
  if (!count) return null;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = String(count);
  const words = document.createElement("span");
  words.className = "visually-hidden";
  words.textContent = count === 1 ? " unread message" : " unread messages";
  badge.appendChild(words);
  return badge;
}

// ------------------------------------------------------------------ notifications
function notificationsOn() {
  return "Notification" in window && Notification.permission === "granted";
}

function renderNotifyButton() {
  if (!notifyButton) return;
  notifyButton.hidden = !("Notification" in window) || Notification.permission !== "default";
}

if (notifyButton) {
  renderNotifyButton();
  notifyButton.addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } catch (e) {
      // An old browser without the promise form: nothing to do.
    }
    renderNotifyButton();
  });
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The text names me: my username or display name as a whole word, with or without "@". */
function mentions(text, me) {
  const names = [me.username, me.displayName].filter(Boolean).map(escapeRegExp);
  const word = "[\\p{L}\\p{N}_]";
  const alone = "(^|(?!" + word + ").)@?(" + names.join("|") + ")(?!" + word + ")";
  const pattern = new RegExp(alone, "iu");
  return pattern.test(text);
}

/** Notify about a message naming the reader, when they are not looking at it. */
export function maybeNotify(message, channelName, me, looking) {
  if (!me || !notificationsOn() || looking || message.author.id === me.id) return;
  if (!mentions(message.text, me)) return;
  const from = message.author.displayName || message.author.username;
  new Notification(from + " in #" + channelName, { body: message.text.slice(0, 200) });
}
