/* plp chat: creating and deleting channels, for those allowed (SPEC §12: a class's teachers
 * and admins make and delete its channels; school-wide ones are the admins', and the teacher
 * who made one before classes may still delete it). */

import { sendJson } from "./api.js";
import * as groups from "./groups.js";

const form = document.getElementById("new-channel");
const formBox = document.getElementById("new-channel-box");
const formError = document.getElementById("new-channel-error");
const deleteButton = document.getElementById("delete-channel");
const scope = document.getElementById("new-channel-class");

export function canDeleteChannel(me, channel) {
  if (!me || !channel) return false;
  if (me.role === "admin") return true;
  if (me.role !== "teacher") return false;
  if (channel.classId === null) return channel.createdBy === me.id;
  return groups.teaches(channel.classId);
}

/** Show or hide the controls for this user and channel; the form offers only the classes
 * (or school-wide) where the user may make a channel. */
export function renderControls(me, channel) {
  const places = groups.creatable(me);
  formBox.hidden = places.length === 0;
  const chosen = scope.value;
  scope.replaceChildren();
  for (const place of places) {
    const option = document.createElement("option");
    option.value = place.id === null ? "" : String(place.id);
    option.textContent = place.name;
    scope.appendChild(option);
  }
  if (Array.from(scope.options).some((o) => o.value === chosen)) scope.value = chosen;
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
      kind: form.elements.kind.value,
      classId: scope.value ? Number(scope.value) : null
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
