/* plp chat: JSON API calls. State-changing calls carry the XSRF header from the _xsrf cookie. */

let onSignedOut = () => {};

/** Called with no arguments when an API call answers 401 (the session ended). */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

function xsrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** GET a JSON document; null when it failed (network, 4xx, 5xx). */
export async function getJson(url) {
  try {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    });
    if (response.status === 401) {
      onSignedOut();
      return null;
    }
    return response.ok ? await response.json() : null;
  } catch (e) {
    return null;
  }
}

/** POST/DELETE with a JSON body; {ok, status, data} where data is the parsed answer or null. */
export async function sendJson(method, url, body) {
  const headers = { Accept: "application/json", "X-XSRFToken": xsrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    });
    if (response.status === 401) onSignedOut();
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (e) {
        data = null;
      }
    }
    return { ok: response.ok, status: response.status, data };
  } catch (e) {
    return { ok: false, status: 0, data: { message: "The server cannot be reached." } };
  }
}
