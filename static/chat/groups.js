/* plp chat: the channel list grouped by class (SPEC §12) — a heading per class, in the
 * order the server gives classes, then the school-wide channels — and which classes the
 * user teaches (a class teacher may delete any message in that class's channels).
 * The page renders the first list (templates/chat.html); /api/classes keeps it current.
 * Text only ever goes in with textContent. */

const root = document.getElementById("chat");
const SCHOOL_WIDE = root.getAttribute("data-school-wide") || "School-wide";
let classes = []; // [{id, name}] in the server's order (by name)
let teaching = new Set(
  (root.getAttribute("data-teaches") || "").split(" ").filter(Boolean).map(Number)
);

/** The class names from the server-rendered headings. */
export function readServerRendered(list) {
  classes = Array.from(list.querySelectorAll("li.group[data-class]"))
    .filter((li) => li.getAttribute("data-class"))
    .map((li) => ({
      id: Number(li.getAttribute("data-class")),
      name: li.querySelector(".group-title").textContent
    }));
}

/** The user's classes as /api/classes answers them (`myRole` says what they are there). */
export function setClasses(list) {
  classes = list.map((c) => ({ id: c.id, name: c.name }));
  teaching = new Set(list.filter((c) => c.myRole === "teacher").map((c) => c.id));
}

/** Where `me` may make channels: [{id, name}], id null for school-wide (admins only). */
export function creatable(me) {
  if (!me) return [];
  if (me.role === "admin") return [{ id: null, name: SCHOOL_WIDE }, ...classes];
  if (me.role !== "teacher") return [];
  return classes.filter((c) => teaching.has(c.id));
}

/** Whether the user is a class teacher of this class (null: a school-wide channel). */
export function teaches(classId) {
  return classId !== null && teaching.has(classId);
}

/** [{title, classId, channels}]: each class with channels, then the school-wide ones. */
export function groupsOf(channels) {
  const groups = [];
  const known = new Set();
  for (const c of classes) {
    known.add(c.id);
    const own = channels.filter((channel) => channel.classId === c.id);
    if (own.length) groups.push({ title: c.name, classId: c.id, channels: own });
  }
  // A class the list of classes has not caught up with yet (joined a moment ago).
  const other = channels.filter((c) => c.classId !== null && !known.has(c.classId));
  if (other.length) groups.push({ title: "Other classes", classId: -1, channels: other });
  const school = channels.filter((channel) => channel.classId === null);
  if (school.length) groups.push({ title: SCHOOL_WIDE, classId: null, channels: school });
  return groups;
}

/** Fill the list: per group a heading and a list of `item(channel)` elements. */
export function render(list, channels, item) {
  list.replaceChildren();
  for (const group of groupsOf(channels)) {
    const headingId = "group-" + (group.classId === null ? "school" : String(group.classId));
    const li = document.createElement("li");
    li.className = "group";
    li.setAttribute("data-class", group.classId === null ? "" : String(group.classId));
    const heading = document.createElement("h3");
    heading.className = "group-title";
    heading.id = headingId;
    heading.textContent = group.title;
    const ul = document.createElement("ul");
    ul.setAttribute("aria-labelledby", headingId);
    for (const channel of group.channels) ul.appendChild(item(channel));
    li.append(heading, ul);
    list.appendChild(li);
  }
}
