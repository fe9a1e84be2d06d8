// Passkeys in the browser (SPEC §14): "Add a passkey" on /account and "Sign in with a
// passkey" on /login. The server sends WebAuthn options in their JSON form and takes the
// credential as PublicKeyCredential.toJSON() makes it; the challenge stays on the server
// (bound to the session, or to a signed cookie for a sign-in), never in this script's body.

const b64urlToBytes = (text) => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
};

const bytesToB64url = (buffer) => {
  const bytes = new Uint8Array(buffer);
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

// Older browsers lack the JSON helpers; these do the same conversions by hand.
const creationOptions = (json) => {
  if (PublicKeyCredential.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    user: { ...json.user, id: b64urlToBytes(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map((c) => ({
      ...c,
      id: b64urlToBytes(c.id),
    })),
  };
};

const requestOptions = (json) => {
  if (PublicKeyCredential.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    allowCredentials: (json.allowCredentials || []).map((c) => ({
      ...c,
      id: b64urlToBytes(c.id),
    })),
  };
};

const credentialJSON = (credential) => {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const r = credential.response;
  const response = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bytesToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = bytesToB64url(r.authenticatorData);
    response.signature = bytesToB64url(r.signature);
    if (r.userHandle) response.userHandle = bytesToB64url(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: bytesToB64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
  };
};

const xsrfToken = () => {
  const field = document.querySelector('input[name="_xsrf"]');
  return field ? field.value : "";
};

const postJSON = async (path, body) => {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-XSRFToken": xsrfToken() },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.message || `The server answered ${response.status}.`);
  }
  return data;
};

// Words for the browser's own refusals, which are written for developers.
const readable = (error) => {
  if (error && error.name === "NotAllowedError") {
    return "The passkey request was cancelled or timed out. Try again.";
  }
  if (error && error.name === "InvalidStateError") {
    return "This device already holds a passkey for your account.";
  }
  if (error && error.name === "SecurityError") {
    return "Passkeys do not work on this address (it needs HTTPS or localhost).";
  }
  return (error && error.message) || "Something went wrong with the passkey.";
};

const showError = (element, error) => {
  element.textContent = readable(error);
  element.hidden = false;
};

const supported = () => typeof window.PublicKeyCredential === "function";

const setUpAdd = (form) => {
  const error = document.getElementById("passkey-add-error");
  const button = document.getElementById("passkey-add-button");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!supported()) {
      showError(error, new Error("This browser does not support passkeys."));
      return;
    }
    button.disabled = true;
    try {
      const options = await postJSON("/api/users/me/passkeys/options");
      const credential = await navigator.credentials.create({
        publicKey: creationOptions(options),
      });
      const name = form.querySelector('input[name="name"]').value.trim();
      const body = { credential: credentialJSON(credential) };
      if (name) body.name = name;
      await postJSON("/api/users/me/passkeys", body);
      window.location.assign("/account?done=passkey-added#passkeys");
    } catch (failure) {
      showError(error, failure);
    } finally {
      button.disabled = false;
    }
  });
};

// Only same-site relative paths, as the server's own `next` rule (SPEC §5).
const safeNext = (target) =>
  target && target.startsWith("/") && !target.startsWith("//") && !target.startsWith("/\\")
    ? target
    : "/dashboard";

const setUpLogin = (box) => {
  const error = document.getElementById("passkey-login-error");
  const button = document.getElementById("passkey-login-button");
  button.addEventListener("click", async () => {
    error.hidden = true;
    if (!supported()) {
      showError(error, new Error("This browser does not support passkeys."));
      return;
    }
    button.disabled = true;
    try {
      const options = await postJSON("/api/auth/login/passkey/options");
      const credential = await navigator.credentials.get({
        publicKey: requestOptions(options),
      });
      await postJSON("/api/auth/login/passkey", { credential: credentialJSON(credential) });
      window.location.assign(safeNext(box.dataset.next));
    } catch (failure) {
      showError(error, failure);
    } finally {
      button.disabled = false;
    }
  });
};

const addForm = document.querySelector("form[data-passkey-add]");
if (addForm) setUpAdd(addForm);
const loginBox = document.getElementById("passkey-login");
if (loginBox) setUpLogin(loginBox);
