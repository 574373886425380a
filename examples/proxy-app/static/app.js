// proxy-app: the browser's half of the one-time-code sign-in.
//
// The sign-in page makes a P-256 key pair with WebCrypto (the private key
// non-extractable, kept in IndexedDB) and sends its public key with the
// email as `targetPublicKey`. After the code is verified, the backend hands
// back passgate's `authSession`: a session private key sealed to that key
// (HPKE base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
// info "turnkey_hpke", base58check). Only this browser can open it. The
// page opens it, imports the session key (non-extractable), and signs a
// `whoami` request with it in the X-Stamp format, sent through the backend
// to passgate. No token, code or key is ever put in a URL or in storage
// other than IndexedDB's CryptoKey objects.
'use strict';

const DB_NAME = 'proxy-app';
const STORE = 'keys';

// ---- bytes -----------------------------------------------------------------
const utf8 = (s) => new TextEncoder().encode(s);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const i2osp = (n, width) => {
  const out = new Uint8Array(width);
  for (let i = width - 1; i >= 0; i--) { out[i] = n & 0xff; n >>= 8; }
  return out;
};
const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const toBig = (bytes) => BigInt('0x' + (hex(bytes) || '0'));
const fromBig = (n, width) => {
  const out = new Uint8Array(width);
  for (let i = width - 1; i >= 0; i--) { out[i] = Number(n & 0xffn); n >>= 8n; }
  return out;
};

// ---- base58check -------------------------------------------------------------
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
async function base58checkDecode(text) {
  let n = 0n;
  for (const c of text) {
    const v = B58.indexOf(c);
    if (v < 0) throw new Error('not base58');
    n = n * 58n + BigInt(v);
  }
  let body = [];
  while (n > 0n) { body.unshift(Number(n & 0xffn)); n >>= 8n; }
  const zeros = text.length - text.replace(/^1+/, '').length;
  const all = concat(new Uint8Array(zeros), Uint8Array.from(body));
  const payload = all.slice(0, -4);
  const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', await crypto.subtle.digest('SHA-256', payload)));
  if (hex(sum.slice(0, 4)) !== hex(all.slice(-4))) throw new Error('bad checksum');
  return payload;
}

// ---- P-256 arithmetic (public values only: decompression, d·G) ---------------
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const A = P - 3n;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const G = [0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
           0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n];
const mod = (a) => ((a % P) + P) % P;
function pow(b, e) {
  let r = 1n; b = mod(b);
  while (e > 0n) { if (e & 1n) r = (r * b) % P; b = (b * b) % P; e >>= 1n; }
  return r;
}
const inv = (a) => pow(a, P - 2n);
function add(p1, p2) {
  if (p1 === null) return p2;
  if (p2 === null) return p1;
  const [x1, y1] = p1; const [x2, y2] = p2;
  if (x1 === x2 && mod(y1 + y2) === 0n) return null;
  const l = x1 === x2 ? mod((3n * x1 * x1 + A) * inv(2n * y1)) : mod((y2 - y1) * inv(x2 - x1));
  const x3 = mod(l * l - x1 - x2);
  return [x3, mod(l * (x1 - x3) - y1)];
}
function multiply(k, point) {
  let r = null;
  for (let q = point; k > 0n; k >>= 1n, q = add(q, q)) if (k & 1n) r = add(r, q);
  return r;
}
function decompress(bytes) {
  if (bytes.length !== 33 || (bytes[0] !== 2 && bytes[0] !== 3)) throw new Error('not a compressed point');
  const x = toBig(bytes.slice(1));
  if (x >= P) throw new Error('not a field element');
  const y2 = mod(x * x * x + A * x + B);
  let y = pow(y2, (P + 1n) / 4n);
  if (mod(y * y) !== y2) throw new Error('not on the curve');
  if (Number(y & 1n) !== (bytes[0] & 1)) y = P - y;
  return concat([4], fromBig(x, 32), fromBig(y, 32));
}

// ---- HPKE (RFC 9180), base mode, open only ------------------------------------
async function hmac(key, data) {
  // An empty HMAC key is the same as HashLen zero bytes (RFC 2104 padding).
  const k = await crypto.subtle.importKey('raw', key.length ? key : new Uint8Array(32),
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, data));
}
async function expand(prk, info, length) {
  let t = new Uint8Array(0); const out = [];
  for (let i = 1, have = 0; have < length; i++) { t = await hmac(prk, concat(t, info, [i])); out.push(t); have += t.length; }
  return concat(...out).slice(0, length);
}
const labeledExtract = (suite, salt, label, ikm) => hmac(salt, concat(utf8('HPKE-v1'), suite, utf8(label), ikm));
const labeledExpand = (suite, prk, label, info, length) =>
  expand(prk, concat(i2osp(length, 2), utf8('HPKE-v1'), suite, utf8(label), info), length);

/** Opens a credential bundle with the target private key; the 32-byte session scalar. */
async function openBundle(bundle, targetPrivate, targetPublic) {
  const data = await base58checkDecode(bundle);
  const enc = decompress(data.slice(0, 33));
  const ciphertext = data.slice(33);
  const encKey = await crypto.subtle.importKey('raw', enc, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
  const dh = new Uint8Array(await crypto.subtle.deriveBits({ name: 'ECDH', public: encKey }, targetPrivate, 256));
  const kem = concat(utf8('KEM'), i2osp(0x0010, 2));
  const empty = new Uint8Array(0);
  const eaePrk = await labeledExtract(kem, empty, 'eae_prk', dh);
  const shared = await labeledExpand(kem, eaePrk, 'shared_secret', concat(enc, targetPublic), 32);
  const suite = concat(utf8('HPKE'), i2osp(0x0010, 2), i2osp(0x0001, 2), i2osp(0x0002, 2));
  const context = concat([0], await labeledExtract(suite, empty, 'psk_id_hash', empty),
    await labeledExtract(suite, empty, 'info_hash', utf8('turnkey_hpke')));
  const secret = await labeledExtract(suite, shared, 'secret', empty);
  const key = await labeledExpand(suite, secret, 'key', context, 32);
  const nonce = await labeledExpand(suite, secret, 'base_nonce', context, 12);
  const aes = await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['decrypt']);
  return new Uint8Array(await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: concat(enc, targetPublic) }, aes, ciphertext));
}

// ---- the session key and its stamps -------------------------------------------
async function importSessionKey(scalar) {
  const [x, y] = multiply(toBig(scalar), G);
  const jwk = { kty: 'EC', crv: 'P-256', d: b64url(scalar), x: b64url(fromBig(x, 32)), y: b64url(fromBig(y, 32)) };
  const privateKey = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  return { privateKey, publicKey: hex(concat([y & 1n ? 3 : 2], fromBig(x, 32))) };
}
function derInteger(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.slice(i);
  return concat([2, v[0] & 0x80 ? v.length + 1 : v.length], v[0] & 0x80 ? [0] : [], v);
}
/** The X-Stamp header for `body`, in @turnkey/api-key-stamper's format. */
async function stamp(session, body) {
  const raw = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, session.privateKey, utf8(body)));
  const seq = concat(derInteger(raw.slice(0, 32)), derInteger(raw.slice(32)));
  const der = concat([0x30, seq.length], seq);
  const json = JSON.stringify({ publicKey: session.publicKey, scheme: 'SIGNATURE_SCHEME_TK_API_P256', signature: hex(der) });
  return b64url(utf8(json));
}

// ---- IndexedDB for CryptoKey objects ----------------------------------------------
function db() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}
async function keep(name, value) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).put(value, name);
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
}
async function recall(name) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const request = d.transaction(STORE).objectStore(STORE).get(name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// ---- the pages ----------------------------------------------------------------------
async function prepareTargetKey(field) {
  const pair = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  await keep('target', { privateKey: pair.privateKey, publicKey });
  field.value = hex(publicKey);
}

async function finishWithCode(form) {
  const status = document.getElementById('status');
  const data = Object.fromEntries(new FormData(form));
  const answer = await fetch(form.action, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(data),
  });
  const result = await answer.json();
  if (!answer.ok) { status.textContent = result.detail || 'Sign-in failed.'; return; }
  const next = document.getElementById('continue');
  next.href = result.landing;
  if (result.authSession) {
    status.textContent = 'Signed in. Opening the session credential…';
    const target = await recall('target');
    const scalar = await openBundle(result.authSession.credentialBundle, target.privateKey, target.publicKey);
    const session = await importSessionKey(scalar);
    scalar.fill(0);
    await keep('session', session);
    const body = JSON.stringify({ action: 'whoami', timestampMs: String(Date.now()) });
    const whoami = await fetch('/session/whoami', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-stamp': await stamp(session, body) }, body,
    });
    document.getElementById('whoami').textContent = JSON.stringify(await whoami.json(), null, 2);
    status.textContent = whoami.ok ? 'Signed in; passgate answered the stamped whoami.' : 'The stamped whoami was refused.';
  } else {
    status.textContent = 'Signed in.';
  }
  next.hidden = false;
}

if (typeof document !== 'undefined') {
  document.addEventListener('DOMContentLoaded', () => {
    const field = document.getElementById('target-public-key');
    if (field && window.crypto && crypto.subtle) {
      prepareTargetKey(field).catch((e) => console.error('no session key:', e));
    }
    const form = document.getElementById('code-form');
    if (form) {
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        finishWithCode(form).catch((e) => {
          document.getElementById('status').textContent = 'Sign-in failed: ' + e.message;
        });
      });
    }
  });
}

if (typeof module !== 'undefined') {
  module.exports = { openBundle, importSessionKey, stamp, base58checkDecode, decompress, multiply, G };
}
