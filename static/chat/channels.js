/* plp chat: creating and deleting channels, for those allowed (SPEC §6: teachers and admins
 * create; an admin, or the teacher who made it, deletes). */

import { sendJson } from "./api.js";

const form = document.getElementById("new-channel");
const formBox = document.getElementById("new-channel-box");
const formError = document.getElementById("new-channel-error");
const deleteButton = document.getElementById("delete-channel");

export function canCreate(me) {
  return !!me && (me.role === "teacher" || me.role === "admin");
}

export function canDeleteChannel(me, channel) {
  if (!me || !channel) return false;
  return me.role === "admin" || (me.role === "teacher" && channel.createdBy === me.id);
}

/** Show or hide the controls for this user and channel. */
export function renderControls(me, channel) {
  formBox.hidden = !canCreate(me);
  deleteButton.hidden = !canDeleteChannel(me, channel);
}

/** Wire the form and the delete button; onCreated(channel) and onDeleted(id) follow success. */
export function setUp(currentChannel, onCreated, onDeleted) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.textContent = "";
    const body = {
      name: form.elements.name.value.trim(),
      description: form.elements.description.value.trim(),
      kind: form.elements.kind.value
    };
    const answer = await sendJson("POST", "/api/channels", body);
    if (!answer.ok) {
      formError.textContent = (answer.data && answer.data.message) || "Could not create it.";
      return;
    }
    form.reset();
    formBox.open = false;
    onCreated(answer.data.channel);
  });
  deleteButton.addEventListener("click", async () => {
    const channel = currentChannel();
    if (!channel || !window.confirm("Delete #" + channel.name + " and all its messages?")) return;
    const answer = await sendJson("DELETE", "/api/channels/" + channel.id);
    if (answer.ok) {
      onDeleted(channel.id);
    } else {
      window.alert((answer.data && answer.data.message) || "Could not delete the channel.");
    }
  });
}
