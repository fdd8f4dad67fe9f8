// idca's pages in a real browser (headless Chromium, playwright-core), with assertions:
// the login page with code + PKCE back to the client (code, state, iss), a wrong password
// shown on the page, response_mode=form_post POSTed to the client by the page's own
// script (allowed by its CSP hash), the account page (a grant listed and revoked), and
// logout through its confirmation page. Each page is screenshotted (a PNG that is not blank).
// scripts/page-tests runs it against a fresh `idca serve` with a user alice / wonderland.
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const BASE = process.env.IDCA_BASE || 'https://localhost:14000';
const SHOTS = process.env.SHOTS || '/tmp/idca-pages';
fs.mkdirSync(SHOTS, { recursive: true });
const fail = m => { console.error('FAIL', m); process.exit(1); };
// The client: what reaches its redirect URI (a real listener: Chromium does not route
// the hops of a redirect).
let back = null;
const client = http.createServer((req, res) => {
  let body = '';
  req.on('data', c => { body += c; });
  req.on('end', () => {
    // Only the redirect URI counts (the browser asks for a favicon too).
    if (!req.url.startsWith('/callback')) { res.statusCode = 404; res.end(); return; }
    back = { url: `http://127.0.0.1:8765${req.url}`, method: req.method, body };
    res.end('back at the app');
  });
}).listen(8765, '127.0.0.1');
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const fresh = async () => (await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } })).newPage();
const shot = async (page, name) => {
  const path = `${SHOTS}/${name}.png`;
  await page.screenshot({ path });
  if (fs.statSync(path).size < 2000) fail(`${name}.png looks blank`);
};
let verifier = null;
const authorize = extra => {
  verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return `${BASE}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=http://127.0.0.1:8765/callback`
    + `&scope=openid%20profile&state=browser-state&code_challenge=${challenge}&code_challenge_method=S256${extra}`;
};
const login = async (page, password) => {
  await page.fill('#username', 'alice');
  await page.fill('#password', password);
};

// 1. Login, redirected back with code, state and iss.
let page = await fresh();
await page.goto(authorize(''));
await shot(page, 'login');
await login(page, 'wonderland');
await Promise.all([page.waitForURL('http://127.0.0.1:8765/**'), page.click('button[type=submit]')]);
const u = new URL(back.url);
if (back.method !== 'GET' || !u.searchParams.get('code') || u.searchParams.get('state') !== 'browser-state' || u.searchParams.get('iss') !== BASE) fail(`query response: ${JSON.stringify(back)}`);
console.log('query response: code, state and iss at the client');

// 2. A wrong password is shown on the page.
page = await fresh();
await page.goto(authorize(''));
await login(page, 'nope');
await page.click('button[type=submit]');
await page.waitForSelector('.error');
const message = await page.textContent('.error');
if (!/Wrong user name or password/.test(message)) fail(`error message: ${message}`);
await shot(page, 'wrong-password');
console.log('wrong password:', message);

// 3. form_post: the page POSTs code, state and iss to the client by itself.
page = await fresh();
back = null;
await page.goto(authorize('&response_mode=form_post'));
await login(page, 'wonderland');
await Promise.all([page.waitForURL('http://127.0.0.1:8765/**', { timeout: 10000 }), page.click('button[type=submit]')]);
const posted = new URLSearchParams(back && back.body || '');
if (back.method !== 'POST' || !posted.get('code') || posted.get('state') !== 'browser-state' || posted.get('iss') !== BASE) fail(`form_post response: ${JSON.stringify(back)}`);
console.log('form_post response: POSTed code, state and iss to the client');

// 4. The account page: the grant the code just redeemed is listed and revoked there.
const redeemed = await page.request.post(`${BASE}/oauth/token`, { form: { grant_type: 'authorization_code',
  code: posted.get('code'), code_verifier: verifier, client_id: 'idca-cli', redirect_uri: 'http://127.0.0.1:8765/callback' } });
if (redeemed.status() !== 200) fail(`token: ${redeemed.status()} ${await redeemed.text()}`);
await page.goto(`${BASE}/oauth/account`);
await page.waitForSelector('text=Applications with access');
if (!(await page.textContent('.grants')).includes('idca command line')) fail('the grant is not listed');
if (!(await page.textContent('.sessions')).includes('(this browser)')) fail('the session is not listed');
await shot(page, 'account');
await Promise.all([page.waitForURL(`${BASE}/oauth/account`), page.click('text=Revoke access')]);
await page.waitForSelector('text=No application has access');
await shot(page, 'account-revoked');
console.log('account page: the grant and this session listed, the grant revoked');

// 5. Logout without an id_token_hint: a confirmation page, then signed out (the next
// authorization request shows the login page again).
await page.goto(`${BASE}/oauth/logout?client_id=idca-cli`);
await page.waitForSelector('text=Sign out?');
await shot(page, 'logout-confirm');
await page.click('button[type=submit]');
await page.waitForSelector('text=You are signed out');
await shot(page, 'signed-out');
await page.goto(authorize(''));
if (!(await page.$('#password'))) fail('still signed in after logout');
console.log('logout: confirmed, signed out, the login page again');
await browser.close();
client.close();
console.log('RESULT pages ok');
