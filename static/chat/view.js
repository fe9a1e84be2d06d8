/* plp chat: the message list — items, day separators, grouping by author, empty state and
 * the scroll position (stays on the newest message unless the reader scrolled up).
 * Text is only ever inserted with textContent (no innerHTML). */

const GROUP_WITHIN = 5 * 60 * 1000; // ms: consecutive messages by one author share a heading
const NEAR_END = 40; // px from the bottom that still counts as "reading the newest"

const list = document.getElementById("messages");
const empty = document.getElementById("empty");
const jump = document.getElementById("jump");
let unseenBelow = 0;
let canDelete = () => false;
let deleteHandler = () => {};

/** Who may delete a message (a function of its author id), and what to do when they ask. */
export function setDeletePolicy(allowed, handler) {
  canDelete = allowed;
  deleteHandler = handler;
}

function dayKey(date) {
  return date.getFullYear() + "-" + date.getMonth() + "-" + date.getDate();
}

function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(date) === dayKey(today)) return "Today";
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  const sameYear = date.getFullYear() === today.getFullYear();
  return date.toLocaleDateString([], {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: sameYear ? undefined : "numeric"
  });
}

function formatTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function whenOf(li) {
  const iso = li.getAttribute("data-at");
  const date = iso ? new Date(iso) : new Date();
  return isNaN(date.getTime()) ? new Date() : date;
}

/** A message item; createdAt null for a message not yet stored (shown as "now"). */
export function messageItem(author, text, createdAt) {
  const li = document.createElement("li");
  li.className = "message";
  li.setAttribute("data-author", String(author.id));
  if (createdAt) li.setAttribute("data-at", createdAt);
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "author";
  who.textContent = author.displayName || author.username;
  who.title = "@" + author.username + " (" + author.role + ")";
  const time = document.createElement("time");
  time.className = "time";
  const date = whenOf(li);
  if (createdAt) time.dateTime = createdAt;
  time.textContent = formatTime(date);
  time.title = date.toLocaleString();
  meta.append(who, time);
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  li.append(meta, body);
  return li;
}

function deleteButton(li) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link delete";
  button.textContent = "Delete";
  button.setAttribute("aria-label", "Delete this message");
  button.addEventListener("click", () => deleteHandler(Number(li.getAttribute("data-id"))));
  return button;
}

/** Day separators, author grouping, delete buttons and the empty state, from the list as is. */
export function decorate() {
  list.querySelectorAll("li.day").forEach((node) => node.remove());
  let previous = null;
  for (const li of Array.from(list.children)) {
    const when = whenOf(li);
    const newDay = !previous || dayKey(whenOf(previous)) !== dayKey(when);
    if (newDay) {
      const separator = document.createElement("li");
      separator.className = "day";
      separator.setAttribute("role", "separator");
      separator.textContent = dayLabel(when);
      list.insertBefore(separator, li);
    }
    const grouped =
      !newDay &&
      previous.getAttribute("data-author") === li.getAttribute("data-author") &&
      when - whenOf(previous) < GROUP_WITHIN;
    li.classList.toggle("grouped", grouped);
    const stored = li.hasAttribute("data-id");
    const button = li.querySelector("button.delete");
    const allowed = stored && canDelete(Number(li.getAttribute("data-author")));
    if (allowed && !button) li.appendChild(deleteButton(li));
    if (!allowed && button) button.remove();
    previous = li;
  }
}

/** Show "No messages yet" once the history is known to be empty; hide it otherwise. */
export function showEmptyState(known) {
  empty.hidden = !(known && list.querySelector("li.message") === null);
}

export function clear() {
  list.replaceChildren();
  empty.hidden = true;
  unseenBelow = 0;
  renderJump();
}

export function isAtEnd() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_END;
}

export function scrollToEnd() {
  list.scrollTop = list.scrollHeight;
  unseenBelow = 0;
  renderJump();
}

/** A new message arrived below while the reader was scrolled up. */
export function noteUnseen() {
  unseenBelow += 1;
  renderJump();
}

function renderJump() {
  jump.hidden = unseenBelow === 0;
  jump.textContent = unseenBelow === 1 ? "1 new message ↓" : unseenBelow + " new messages ↓";
}

jump.addEventListener("click", scrollToEnd);
list.addEventListener("scroll", () => {
  if (unseenBelow && isAtEnd()) {
    unseenBelow = 0;
    renderJump();
  }
});
