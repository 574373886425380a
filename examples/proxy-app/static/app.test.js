// The sign-in page's cryptography, under Node's WebCrypto, against known
// answers: the credential bundle that Turnkey's SDK tests decrypt
// (tkhq/sdk, packages/crypto) must open to its known private key, and a
// stamp made with the imported session key must verify over its body.
// Run by examples/proxy-app/tests/e2e.rs (`node --test`), so it runs with
// the rest of the suite.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const app = require('./app.js');

const hexToBytes = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));
const hex = (b) => Buffer.from(b).toString('hex');
const b64url = (b) => Buffer.from(b).toString('base64url');
const fromBig = (n) => hexToBytes(n.toString(16).padStart(64, '0'));

const RECEIVER = '20fa65df11f24833790ae283fc9a0c215eecbbc589549767977994dc69d05a56';
const BUNDLE = 'w99a5xV6A75TfoAUkZn869fVyDYvgVsKrawMALZXmrauZd8hEv66EkPU1Z42CUaHESQjcA5bqd8dynTGBMLWB9ewtXWPEVbZvocB4Tw2K1vQVp7uwjf';
const SESSION = '67ee05fc3bdf4161bc70701c221d8d77180294cefcfcea64ba83c4d4c732fcb9';

async function receiverKey() {
  const d = hexToBytes(RECEIVER);
  const [x, y] = app.multiply(BigInt('0x' + RECEIVER), app.G);
  const jwk = { kty: 'EC', crv: 'P-256', d: b64url(d), x: b64url(fromBig(x)), y: b64url(fromBig(y)) };
  const privateKey = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const publicKey = new Uint8Array([4, ...fromBig(x), ...fromBig(y)]);
  return { privateKey, publicKey };
}

test("Turnkey's known bundle opens to its known key", async () => {
  const { privateKey, publicKey } = await receiverKey();
  const scalar = await app.openBundle(BUNDLE, privateKey, publicKey);
  assert.strictEqual(hex(scalar), SESSION);
});

test('a changed bundle or another key opens nothing', async () => {
  const { privateKey, publicKey } = await receiverKey();
  await assert.rejects(app.openBundle(BUNDLE.replace('w', 'x'), privateKey, publicKey));
  const other = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const otherPublic = new Uint8Array(await crypto.subtle.exportKey('raw', other.publicKey));
  await assert.rejects(app.openBundle(BUNDLE, other.privateKey, otherPublic));
});

test('point decompression round-trips and refuses points off the curve', () => {
  const [x, y] = app.multiply(BigInt('0x' + SESSION), app.G);
  const compressed = new Uint8Array([y & 1n ? 3 : 2, ...fromBig(x)]);
  assert.strictEqual(hex(app.decompress(compressed)), '04' + hex(fromBig(x)) + hex(fromBig(y)));
  const bad = compressed.slice();
  bad[32] ^= 1;
  assert.throws(() => app.decompress(bad.fill(0xff, 1)));
});

test('stamps carry the compressed key and a DER signature over the exact body', async () => {
  const session = await app.importSessionKey(hexToBytes(SESSION));
  const [x, y] = app.multiply(BigInt('0x' + SESSION), app.G);
  assert.strictEqual(session.publicKey, (y & 1n ? '03' : '02') + hex(fromBig(x)));
  const verifyKey = await crypto.subtle.importKey('jwk', { kty: 'EC', crv: 'P-256', x: b64url(fromBig(x)), y: b64url(fromBig(y)) },
    { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  for (let i = 0; i < 200; i++) {
    const body = JSON.stringify({ action: 'whoami', timestampMs: String(1795219200000 + i) });
    const stamp = JSON.parse(Buffer.from(await app.stamp(session, body), 'base64url').toString());
    assert.strictEqual(stamp.scheme, 'SIGNATURE_SCHEME_TK_API_P256');
    assert.strictEqual(stamp.publicKey, session.publicKey);
    // DER back to r‖s: the signature verifies over the body and nothing else.
    const der = hexToBytes(stamp.signature);
    assert.strictEqual(der[0], 0x30);
    assert.strictEqual(der[1], der.length - 2);
    let at = 2;
    const ints = [];
    for (let k = 0; k < 2; k++) {
      assert.strictEqual(der[at], 2);
      const len = der[at + 1];
      const v = der.slice(at + 2, at + 2 + len);
      assert.ok(len === 1 || v[0] !== 0 || (v[1] & 0x80), 'minimal encoding');
      ints.push(fromBig(BigInt('0x' + hex(v))));
      at += 2 + len;
    }
    const raw = new Uint8Array([...ints[0], ...ints[1]]);
    const params = { name: 'ECDSA', hash: 'SHA-256' };
    assert.ok(await crypto.subtle.verify(params, verifyKey, raw, new TextEncoder().encode(body)));
    assert.ok(!(await crypto.subtle.verify(params, verifyKey, raw, new TextEncoder().encode(body + ' '))));
  }
});
