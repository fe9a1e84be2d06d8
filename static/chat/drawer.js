/* plp chat: the channel list as a drawer on narrow screens (CSS shows it beside the
 * messages on wide ones). The drawer closes after a channel is picked (see main.js).
 * While open it covers the page, so Tab and Shift+Tab cycle inside it (as in a dialog)
 * and Escape or "Close" hand focus back to the button that opened it. */

const drawerButton = document.getElementById("channels-toggle");
const drawer = document.getElementById("channel-drawer");

export function setDrawer(open) {
  drawerButton.setAttribute("aria-expanded", open ? "true" : "false");
  drawer.classList.toggle("open", open);
  if (open) {
    const current = drawer.querySelector("button[aria-current=true]");
    if (current) current.focus();
  }
}

drawerButton.addEventListener("click", () => {
  setDrawer(drawerButton.getAttribute("aria-expanded") !== "true");
});
document.getElementById("channels-close").addEventListener("click", () => {
  setDrawer(false);
  drawerButton.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && drawer.classList.contains("open")) {
    setDrawer(false);
    drawerButton.focus();
  }
});

const FOCUSABLE =
  "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), " +
  "textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

drawer.addEventListener("keydown", (event) => {
  if (event.key !== "Tab" || !drawer.classList.contains("open")) return;
  const items = [...drawer.querySelectorAll(FOCUSABLE)].filter(
    (el) => el.getClientRects().length > 0,
  );
  if (items.length === 0) return;
  const first = items[0];
  const last = items[items.length - 1];
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
});
