/* plp chat: the channel list as a drawer on narrow screens (CSS shows it beside the
 * messages on wide ones). The drawer closes after a channel is picked (see main.js). */

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
