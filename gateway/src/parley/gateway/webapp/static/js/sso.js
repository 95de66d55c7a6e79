// Signing in with the company's identity provider: the OAuth 2.0 authorization-code flow with
// PKCE (S256), state and an OpenID Connect nonce, made here with WebCrypto. The tab keeps what it
// made in sessionStorage while it is at the provider; the provider sends it back to `/` with
// ?code&state; the state must be the one this tab made, and the code goes to the gateway, which
// exchanges it at the provider (so this page talks to the gateway only). What comes back is used
// exactly like an API key, until it expires.
import { ApiError, request, setCredential } from "./api.js";

const PENDING = "parley.sso.pending";

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomToken(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

// What the sign-in page offers: {enabled, name, authorization_endpoint, client_id, scopes, redirect_uri}.
export async function ssoConfig() {
  const response = await fetch("/v1/sso/config");
  if (!response.ok) return { enabled: false, unavailable: true };
  return response.json();
}

// Off to the provider; the app's page of the moment is where the person comes back to.
export async function startSsoSignIn(config) {
  const verifier = randomToken(48); // 64 characters, within RFC 7636's 43..128
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const pending = {
    state: randomToken(),
    nonce: randomToken(),
    verifier,
    redirectUri: config.redirect_uri || `${location.origin}/`,
    returnTo: location.hash || "#/collections",
    name: config.name,
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(config.authorization_endpoint);
  for (const [name, value] of Object.entries({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: pending.redirectUri,
    scope: config.scopes,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: challenge,
    code_challenge_method: "S256",
  })) {
    url.searchParams.set(name, value);
  }
  location.assign(url.toString());
}

// Back from the provider? Then finish signing in: true when signed in, false when this load is
// not a return from the provider; throws (with words for the person) when the sign-in fails.
export async function finishSsoSignIn() {
  const query = new URLSearchParams(location.search);
  if (!query.has("code") && !query.has("error")) return false;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING); // a code and its verifier are good once
  // The code leaves the address bar (and the history) whatever happens next.
  history.replaceState(null, "", `/${pending ? pending.returnTo : ""}`);
  if (query.has("error")) {
    throw new Error(`The identity provider did not sign you in: ${query.get("error_description") || query.get("error")}.`);
  }
  if (!pending || query.get("state") !== pending.state) {
    throw new Error("That sign-in answer is not for the sign-in this tab started (its state does not match): sign in again.");
  }
  let signedIn;
  try {
    const response = await request("POST", "/v1/sso/token", {
      key: null, // no credential yet: this is how one is had
      json: { code: query.get("code"), code_verifier: pending.verifier, redirect_uri: pending.redirectUri, nonce: pending.nonce },
    });
    signedIn = await response.json();
  } catch (failure) {
    throw failure instanceof ApiError ? new Error(failure.describe()) : failure;
  }
  setCredential(signedIn.token, { expiresAt: signedIn.expires_at, via: pending.name || "single sign-on" });
  return true;
}
