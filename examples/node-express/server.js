// A web app that signs its users in with passgate, in Node.js and Express.
//
// The whole integration is in this file, in the order a user meets it:
//
//   GET  /          a form asking for an email address
//   POST /login     asks passgate to email a link (with a PKCE challenge),
//                   keeps the PKCE verifier in an HttpOnly cookie
//   GET  /callback  where the email's link points: a page with a button,
//                   and nothing else (it never calls passgate)
//   POST /callback  that button: verifies the link's token with passgate,
//                   checks the JWT, starts this app's own session
//   POST /code      the same with the 6-digit code from the email, for a
//                   user who reads the email on another device
//   GET  /me        who is signed in (401 when nobody is)
//   POST /logout    ends this app's session
//
// and, for passgate's webhooks (docs/webhooks.md):
//
//   POST /webhooks/passgate   receives a delivery: checks its signature,
//                             drops a repeat, keeps the event
//   GET  /webhooks/received   the events kept, for a look (or a test)
//
// docs/integrate.md explains each step. Configuration comes from the
// environment only; see README.md beside this file.

import crypto from 'node:crypto';

import cookieParser from 'cookie-parser';
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { Webhook } from 'standardwebhooks';

// ---- configuration ----------------------------------------------------------

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`error: ${name} is required (see README.md)`);
    process.exit(1);
  }
  return value;
}

const trimSlash = (url) => url.replace(/\/+$/, '');

// Where this app reaches passgate (server to server).
const PASSGATE_URL = trimSlash(required('PASSGATE_URL'));
// The project's secret key (sk_live_… or sk_test_…). Never sent to a browser.
const PASSGATE_API_KEY = required('PASSGATE_API_KEY');
// The project id (prj_…): every JWT passgate signs for this project has it as `aud`.
const PASSGATE_PROJECT_ID = required('PASSGATE_PROJECT_ID');
// passgate's public URL, the JWT's `iss` (PASSGATE_PUBLIC_URL on the server).
// The same as PASSGATE_URL unless the app reaches passgate by another address.
const PASSGATE_ISSUER = trimSlash(process.env.PASSGATE_ISSUER || PASSGATE_URL);
// Signs this app's own session cookie.
const SESSION_SECRET = required('SESSION_SECRET');
if (SESSION_SECRET.length < 32) {
  console.error('error: SESSION_SECRET must be at least 32 characters');
  process.exit(1);
}
const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT ?? 3000);
// The URL browsers use for this app; the email's link points under it. When
// unset it is http://HOST:PORT, with the port actually bound (PORT=0 works).
let appBaseUrl = trimSlash(process.env.APP_BASE_URL || '');

const SESSION_TTL_MS = 8 * 60 * 60 * 1000;

// The signing secret of this app's webhook endpoint (whsec_…), shown once by
// POST /api/v2/webhooks (and by rotate-secret). Optional: without it the
// webhook route answers 503 and the rest of the app works as before.
const PASSGATE_WEBHOOK_SECRET = process.env.PASSGATE_WEBHOOK_SECRET || '';
let webhookVerifier = null;
if (PASSGATE_WEBHOOK_SECRET) {
  try {
    webhookVerifier = new Webhook(PASSGATE_WEBHOOK_SECRET);
  } catch {
    console.error('error: PASSGATE_WEBHOOK_SECRET is not a webhook secret (whsec_ followed by base64)');
    process.exit(1);
  }
}

// ---- talking to passgate ------------------------------------------------------

// POSTs JSON to passgate with the project's key; returns the status and the
// parsed body (a problem document with a stable `code` when it failed).
async function passgate(path, body) {
  const response = await fetch(`${PASSGATE_URL}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PASSGATE_API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: await response.json().catch(() => ({})) };
}

// The public keys that sign passgate's JWTs. jose caches them and fetches
// them again when a JWT names a key it does not have (after a rotation).
const jwks = createRemoteJWKSet(new URL(`${PASSGATE_URL}/.well-known/jwks.json`));

// Checks the JWT that verify returned. The answer came straight from passgate
// over the connection this app opened, so this is a second lock, not the
// first: it proves the answer was signed by passgate's key, for this project
// (`aud`), by the passgate this app trusts (`iss`), and is fresh (`exp`). Only
// EdDSA is accepted, so a token cannot choose a weaker algorithm for itself.
async function checkJwt(jwt) {
  const { payload } = await jwtVerify(jwt, jwks, {
    algorithms: ['EdDSA'],
    issuer: PASSGATE_ISSUER,
    audience: PASSGATE_PROJECT_ID,
    requiredClaims: ['sub', 'email', 'exp', 'iat'],
    clockTolerance: 10,
  });
  if (payload.email_verified !== true) throw new Error('email_verified is not true');
  return payload;
}

// ---- PKCE ---------------------------------------------------------------------

// The verifier is a secret only this browser holds (in a cookie); passgate
// gets its SHA-256 at start and the verifier itself at verify. A link opened
// anywhere else (a mail scanner, another browser, someone who intercepted
// the email) cannot be verified, and trying does not use it up.
function newPkce() {
  const verifier = crypto.randomBytes(32).toString('base64url'); // 43 characters
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

// ---- cookies --------------------------------------------------------------------

const secure = () => appBaseUrl.startsWith('https://');
// HttpOnly: page scripts never see them. SameSite=Lax: sent when the user
// follows the email's link (a top-level GET) and with the interstitial's own
// POST, but not with a POST from another site, so another site cannot
// complete a login in this browser.
const cookieOptions = (maxAge) => ({ httpOnly: true, sameSite: 'lax', secure: secure(), path: '/', maxAge });

const LOGIN_COOKIES = ['pg_verifier', 'pg_login_id'];

function clearLoginCookies(res) {
  for (const name of LOGIN_COOKIES) res.clearCookie(name, cookieOptions(undefined));
}

// This app's own session: a signed cookie with the user's id and email. The
// expiry is inside the signed value, because a cookie's Max-Age is only a
// request to the browser.
function startSession(res, claims) {
  const session = { sub: claims.sub, email: claims.email, exp: Date.now() + SESSION_TTL_MS };
  res.cookie('session', session, { ...cookieOptions(SESSION_TTL_MS), signed: true });
}

function currentUser(req) {
  const session = req.signedCookies.session;
  if (!session || typeof session !== 'object' || !(session.exp > Date.now())) return null;
  return session;
}

// ---- pages ------------------------------------------------------------------------

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const page = (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>`;

const emailForm = (message = '') => `${message ? `<p>${escapeHtml(message)}</p>` : ''}
<form method="post" action="/login">
  <label>Email <input type="email" name="email" required autofocus></label>
  <button type="submit">Email me a sign-in link</button>
</form>`;

const codeForm = (message = '') => `${message ? `<p>${escapeHtml(message)}</p>` : ''}
<p>Reading the email on another device? Enter its code here instead:</p>
<form method="post" action="/code">
  <input name="code" inputmode="numeric" autocomplete="one-time-code" required>
  <button type="submit">Sign in with the code</button>
</form>`;

// What to tell a person for each error code passgate documents (docs/api.md).
const REASONS = {
  token_used: 'This link was already used. Ask for a new one.',
  token_expired: 'This link has expired. Ask for a new one.',
  token_burned: 'This link was blocked after too many failed attempts. Ask for a new one.',
  token_invalid: 'This link is not valid. Ask for a new one.',
  invalid_token_format: 'This link is not valid. Ask for a new one.',
  code_verifier_mismatch:
    'Open the link in the browser where you asked for it, or type the code from the email there.',
  code_invalid: 'That code is not right.',
  rate_limited: 'Too many attempts. Wait a little and try again.',
};

// passgate's 401s are the user's problem (a used or foreign link); a 5xx or
// anything unexpected is ours (502: the upstream failed).
const statusFor = (passgateStatus) => ([400, 401, 429].includes(passgateStatus) ? passgateStatus : 502);

// ---- the app ------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');

// ---- webhooks ---------------------------------------------------------------------

// The last verified events, by webhook-id (the event's id, the same on every
// retry), oldest first. A real app records the id in its database, in the
// transaction that acts on the event, and skips an id it has seen; in memory,
// 50 are enough to show the idea.
const RECEIVED_MAX = 50;
const received = new Map();

// A delivery, signed per Standard Webhooks. The signature covers the body's
// exact bytes, so this route reads them raw (express.raw, on this route only,
// before any parser that would turn them into an object) and lets the
// standardwebhooks package check them with the headers. It also refuses a
// webhook-timestamp more than 5 minutes away from this machine's clock.
app.post('/webhooks/passgate', express.raw({ type: 'application/json', limit: '64kb' }), (req, res) => {
  if (!webhookVerifier) {
    res.status(503).json({ error: 'PASSGATE_WEBHOOK_SECRET is not set' });
    return;
  }
  let event;
  try {
    if (!Buffer.isBuffer(req.body)) throw new Error('not a JSON body');
    event = webhookVerifier.verify(req.body, req.headers);
  } catch (error) {
    console.warn(`webhook refused: ${error.message}`);
    res.status(400).json({ error: 'invalid signature' });
    return;
  }
  const webhookId = req.get('webhook-id');
  // Delivery is at least once: a retry after a lost answer repeats an event.
  if (!received.has(webhookId)) {
    received.set(webhookId, { webhookId, type: event.type, data: event.data });
    if (received.size > RECEIVED_MAX) received.delete(received.keys().next().value);
  }
  // Any 2xx settles the delivery; answer quickly and do slow work afterwards.
  res.status(204).end();
});

// req.ip is the socket's address. Behind a reverse proxy, set 'trust proxy'
// (https://expressjs.com/en/guide/behind-proxies.html) so it is the user's.
app.use(express.urlencoded({ extended: false, limit: '4kb' }));
app.use(cookieParser(SESSION_SECRET));
app.use((req, res, next) => {
  // Pages here carry tokens and personal data: never cached.
  res.set('Cache-Control', 'no-store');
  next();
});

app.get('/', (req, res) => {
  const user = currentUser(req);
  const signedIn = user ? `<p>You are signed in as ${escapeHtml(user.email)}. <a href="/me">Your account</a></p>` : '';
  res.send(page('Sign in', signedIn + emailForm()));
});

app.post('/login', async (req, res) => {
  const email = String(req.body.email ?? '').trim();
  const { verifier, challenge } = newPkce();
  const started = await passgate('/api/v2/auth/start', {
    email,
    validationUrl: `${appBaseUrl}/callback`,
    codeChallenge: challenge,
    // A 6-digit code in the email too, for the user on another device.
    includeCode: true,
    // Turns on passgate's per-IP send limit for this user.
    ...(req.ip ? { ipAddress: req.ip } : {}),
    userAgent: String(req.get('user-agent') ?? '').replace(/[\x00-\x1f\x7f]/g, '').slice(0, 512),
  });
  if (started.status !== 202) {
    const reasons = {
      invalid_email: 'That does not look like an email address.',
      email_not_allowed: 'This address may not sign in here.',
      rate_limited: REASONS.rate_limited,
    };
    const message = reasons[started.body.code] ?? 'Something went wrong. Try again.';
    res.status(statusFor(started.status)).send(page('Sign in', emailForm(message)));
    return;
  }
  // The cookies live as long as the link does.
  const maxAge = Math.max(0, Date.parse(started.body.expiresAt) - Date.now());
  res.cookie('pg_verifier', verifier, cookieOptions(maxAge));
  res.cookie('pg_login_id', started.body.loginId, cookieOptions(maxAge));
  res.send(
    page(
      'Check your email',
      `<p>We sent a sign-in link to ${escapeHtml(email)}. Open it in this browser.</p>${codeForm()}`,
    ),
  );
});

// The email's link lands here. Mail scanners and link previewers fetch links
// too, so a GET only shows a button; the token is used when a person presses
// it. No call to passgate happens here.
app.get('/callback', (req, res) => {
  // The token is in this page's URL: keep it out of Referer headers.
  res.set('Referrer-Policy', 'no-referrer');
  const token = typeof req.query.token === 'string' ? req.query.token : '';
  if (!token) {
    res.status(400).send(page('Sign in', '<p>This sign-in link is incomplete.</p><p><a href="/">Start again</a></p>'));
    return;
  }
  res.send(
    page(
      'Continue signing in',
      `<form method="post" action="/callback">
  <input type="hidden" name="token" value="${escapeHtml(token)}">
  <button type="submit">Continue signing in</button>
</form>`,
    ),
  );
});

app.post('/callback', async (req, res) => {
  const verifier = req.cookies.pg_verifier;
  if (!verifier) {
    // Not the browser that asked for the link (or its cookie expired).
    // Calling verify without the verifier would only count a failed attempt
    // against the login, so do not.
    res.status(400).send(page('Could not sign you in', `<p>${escapeHtml(REASONS.code_verifier_mismatch)}</p>`));
    return;
  }
  const token = String(req.body.token ?? '');
  const verified = await passgate('/api/v2/auth/verify', { token, codeVerifier: verifier });
  await finishSignIn(res, verified);
});

app.post('/code', async (req, res) => {
  const { pg_verifier: verifier, pg_login_id: loginId } = req.cookies;
  if (!verifier || !loginId) {
    res.status(400).send(page('Could not sign you in', '<p>Start again from <a href="/">the sign-in page</a>.</p>'));
    return;
  }
  const code = String(req.body.code ?? '');
  const verified = await passgate('/api/v2/auth/verify', { loginId, code, codeVerifier: verifier });
  if (verified.body.code === 'code_invalid' || verified.body.code === 'invalid_request') {
    res.status(401).send(page('Check your email', codeForm(REASONS.code_invalid)));
    return;
  }
  await finishSignIn(res, verified);
});

// After verify: check the JWT, then replace passgate's answer with this
// app's own session. passgate's JWT lives 5 minutes and is not a session.
async function finishSignIn(res, verified) {
  if (verified.status !== 200) {
    const reason = REASONS[verified.body.code] ?? 'Something went wrong. Try again.';
    res.status(statusFor(verified.status)).send(page('Could not sign you in', `<p>${escapeHtml(reason)}</p>`));
    return;
  }
  let claims;
  try {
    claims = await checkJwt(verified.body.jwt);
  } catch (error) {
    // Misconfiguration (PASSGATE_PROJECT_ID, PASSGATE_ISSUER) or a forged
    // answer: either way, nobody is signed in.
    console.error(`the JWT from passgate did not check out: ${error.code ?? error.message}`);
    res.status(502).send(page('Could not sign you in', '<p>Something went wrong. Try again.</p>'));
    return;
  }
  clearLoginCookies(res);
  startSession(res, claims);
  // 303: the browser GETs /me, so reloading it does not post the token again.
  res.redirect(303, '/me');
}

app.get('/me', (req, res) => {
  const user = currentUser(req);
  if (!user) {
    res.status(401).send(page('Not signed in', '<p><a href="/">Sign in</a></p>'));
    return;
  }
  res.send(
    page(
      'Your account',
      `<p>Signed in as <strong>${escapeHtml(user.email)}</strong>.</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>`,
    ),
  );
});

app.post('/logout', (req, res) => {
  res.clearCookie('session', cookieOptions(undefined));
  res.redirect(303, '/');
});

// What arrived, newest last. For a look while developing, or a test: a real
// app would not show its events to anyone who asks.
app.get('/webhooks/received', (req, res) => {
  res.json({ events: [...received.values()] });
});

// An unexpected failure (passgate unreachable, a timeout): a plain page, and
// no stack trace in the response.
app.use((error, req, res, next) => {
  console.error(`request failed: ${error.message}`);
  if (res.headersSent) return next(error);
  res.status(502).send(page('Something went wrong', '<p>Try again in a moment.</p>'));
});

const server = app.listen(PORT, HOST, (error) => {
  if (error) throw error;
  const { port } = server.address();
  if (!appBaseUrl) appBaseUrl = `http://${HOST}:${port}`;
  console.log(`listening on http://${HOST}:${port} (public URL ${appBaseUrl})`);
});
