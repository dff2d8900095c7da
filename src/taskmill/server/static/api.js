// Every call the dashboard makes goes through here: the REST API of the server that served
// the page, with the key the user entered (kept in sessionStorage: this tab only).

const KEY = "taskmill.api-key";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? "http_error";
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

// Asks for a key and resolves once one is entered; calls made meanwhile wait for the same one.
let asking = null;

function askForKey(why) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  document.getElementById("key-why").textContent = why;
  asking = new Promise((resolve) => {
    form.addEventListener(
      "submit",
      () => {
        key.set(input.value.trim());
        input.value = "";
        asking = null;
        resolve();
      },
      { once: true },
    );
  });
  // The dialog is modal: Escape would close it with no key, so it is reopened instead.
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  dialog.showModal();
  input.focus();
  return asking;
}

export async function api(path, { method = "GET", body } = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const stored = key.get();
    if (stored) headers["X-API-Key"] = stored;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      key.forget();
      await askForKey(
        stored ? "That key was refused: enter another." : "This server needs an API key.",
      );
      document.getElementById("forget-key").hidden = false;
      continue;
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}
