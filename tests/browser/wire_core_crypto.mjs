// Wire's own E2EI client (@wireapp/core-crypto 6.0.1, WebAssembly, in headless Chromium)
// enrolls a device against a running idca: account, order, both challenges, finalize,
// certificate, then e2eiMlsInitOnly (which verifies the chain against idca's root).
// Not part of `cargo test`. Run against `idca serve` with a user alice / wonderland that
// has handle, team and domain in config.toml:
//   npm install playwright-core @wireapp/core-crypto@6.0.1
//   NODE_EXTRA_CA_CERTS=data/root.pem IDCA_ROOT=data/root.pem node tests/browser/wire_core_crypto.mjs
// Needs Debian's chromium (/usr/bin/chromium). Chromium runs with web security off: idca
// sends no CORS headers, and the page is served from another origin.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const BASE = process.env.IDCA_BASE || 'https://localhost:14000';
const ROOT = fs.readFileSync(process.env.IDCA_ROOT || 'data/root.pem', 'utf8');
const ccdir = process.env.CORE_CRYPTO_DIR || 'node_modules/@wireapp/core-crypto/src';
const srv = http.createServer((req, res) => {
  if (req.url === '/') { res.setHeader('content-type', 'text/html'); res.end('<!doctype html><title>cc</title>'); return; }
  const f = path.join(ccdir, path.basename(req.url));
  try { res.setHeader('content-type', f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript'); res.end(fs.readFileSync(f)); }
  catch { res.statusCode = 404; res.end(); }
}).listen(8766);

// Scripted OAuth login (code + PKCE through the form), as idca enroll does.
let cookie = null;
async function send(url, opts = {}) {
  opts.headers = { ...(opts.headers || {}), ...(cookie ? { cookie } : {}) };
  const r = await fetch(url, { redirect: 'manual', ...opts });
  const sc = r.headers.get('set-cookie'); if (sc) cookie = sc.split(';')[0];
  return r;
}
async function login(claims) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  let url = `${BASE}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=${encodeURIComponent('http://127.0.0.1/callback')}&scope=${encodeURIComponent('openid profile acme')}&state=s&code_challenge=${challenge}&code_challenge_method=S256`;
  if (claims) url += '&claims=' + encodeURIComponent(JSON.stringify(claims));
  let r = await send(url);
  let loc;
  if (r.status === 303) loc = r.headers.get('location');
  else {
    const page = await r.text();
    const field = n => page.match(new RegExp(`name="${n}" value="([^"]*)"`))[1];
    const body = new URLSearchParams({ request: field('request'), csrf: field('csrf'), username: 'alice', password: 'wonderland' });
    r = await send(`${BASE}/oauth/login`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    loc = r.headers.get('location');
  }
  const code = new URL(loc).searchParams.get('code');
  r = await send(`${BASE}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, client_id: 'idca-cli', redirect_uri: 'http://127.0.0.1/callback' }) });
  return r.json();
}

const user = await login(null);
const device = await (await fetch(`${BASE}/clients`, { method: 'POST', headers: { authorization: `Bearer ${user.access_token}`, 'content-type': 'application/json' }, body: '{}' })).json();
console.log('device', device.client_id);
// wireapp://{b64url uid}!{hex}@{domain}  ->  {uuid}:{hex}@{domain}
const m = device.client_id.match(/^wireapp:\/\/([^!]+)!([0-9a-f]+)@(.+)$/);
const hex = Buffer.from(m[1], 'base64url').toString('hex');
const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
const qualified = `${uuid}:${m[2]}@${m[3]}`;

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-web-security', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const context = await browser.newContext({ ignoreHTTPSErrors: true });
const page = await context.newPage();
page.on('console', msg => console.log('page:', msg.text()));
await page.exposeFunction('idToken', async (keyauth, acmeAud) => {
  const t = await login({ id_token: { keyauth: { essential: true, value: keyauth }, acme_aud: { essential: true, value: acmeAud } } });
  return t.id_token;
});
await page.goto('http://127.0.0.1:8766/');
const result = await page.evaluate(async ({ BASE, qualified, device, userToken, ROOT }) => {
  const { CoreCrypto, DatabaseKey } = await import('http://127.0.0.1:8766/corecrypto.js');
  const log = (...a) => console.log(...a);
  const dec = b => new TextDecoder().decode(b);
  const cc = await CoreCrypto.deferredInit({ databaseName: 'e2ei-' + Date.now(), key: new DatabaseKey(crypto.getRandomValues(new Uint8Array(32))), wasmFilePath: 'http://127.0.0.1:8766/core-crypto-ffi_bg.wasm' });
  await cc.transaction(ctx => ctx.e2eiRegisterAcmeCA(ROOT));
  const e = await cc.transaction(ctx => ctx.e2eiNewEnrollment(qualified, device.name, device.handle.replace(/^wireapp:\/\/%40/, '').replace(/@.*$/, ''), 90 * 86400, 1, device.team));
  let nonce = null;
  const post = async (url, body) => {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/jose+json' }, body });
    nonce = r.headers.get('replay-nonce');
    const b = new Uint8Array(await r.arrayBuffer());
    if (!r.ok) throw new Error(`${url}: ${r.status} ${dec(b)}`);
    return { r, b };
  };
  const dir = await (await fetch(`${BASE}/directory`)).arrayBuffer();
  const d = await e.directoryResponse(new Uint8Array(dir));
  log('directory ok', d.newAccount);
  nonce = (await fetch(d.newNonce, { method: 'HEAD' })).headers.get('replay-nonce');
  let { b } = await post(d.newAccount, await e.newAccountRequest(nonce));
  await e.newAccountResponse(b);
  log('account ok');
  const o = await post(d.newOrder, await e.newOrderRequest(nonce));
  const orderUrl = o.r.headers.get('location');
  const order = await e.newOrderResponse(o.b);
  log('order ok', order.authorizations.length);
  const authz = [];
  for (const url of order.authorizations) {
    const a = await post(url, await e.newAuthzRequest(url, nonce));
    authz.push(await e.newAuthzResponse(a.b));
  }
  const dpopAuthz = authz.find(a => a.challenge.target.includes('/access-token'));
  const oidcAuthz = authz.find(a => !a.challenge.target.includes('/access-token'));
  log('authz ok', dpopAuthz.challenge.url, oidcAuthz.challenge.url, 'keyauth', !!oidcAuthz.keyauth);
  const bn = (await fetch(`${BASE}/clients/${device.id}/nonce`, { method: 'HEAD', headers: { authorization: `Bearer ${userToken}` } })).headers.get('replay-nonce');
  const proof = dec(await e.createDpopToken(300, bn));
  const at = await fetch(dpopAuthz.challenge.target, { method: 'POST', headers: { authorization: `Bearer ${userToken}`, dpop: proof } });
  const atBody = await at.json();
  if (!at.ok) throw new Error('access-token: ' + JSON.stringify(atBody));
  log('access token ok');
  ({ b } = await post(dpopAuthz.challenge.url, await e.newDpopChallengeRequest(atBody.token, nonce)));
  await e.newDpopChallengeResponse(b);
  log('wire-dpop-01 ok');
  const idt = await window.idToken(oidcAuthz.keyauth, oidcAuthz.challenge.url);
  ({ b } = await post(oidcAuthz.challenge.url, await e.newOidcChallengeRequest(idt, nonce)));
  await e.newOidcChallengeResponse(b);
  log('wire-oidc-01 ok');
  ({ b } = await post(orderUrl, await e.checkOrderRequest(orderUrl, nonce)));
  const finalizeUrl = await e.checkOrderResponse(b);
  ({ b } = await post(finalizeUrl, await e.finalizeRequest(nonce)));
  const certUrl = await e.finalizeResponse(b);
  ({ b } = await post(certUrl, await e.certificateRequest(nonce)));
  const chain = dec(b);
  log('certificate ok');
  await cc.transaction(ctx => ctx.e2eiMlsInitOnly(e, chain));
  log('e2eiMlsInitOnly ok');
  return chain.split('-----BEGIN CERTIFICATE-----').length - 1;
}, { BASE, qualified, device, userToken: user.access_token, ROOT });
console.log('RESULT certificates in chain:', result);
await browser.close();
srv.close();
