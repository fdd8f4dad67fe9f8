// A real browser (headless Chromium) logs in through idca's HTML page: code + PKCE.
// Run against `idca serve` with a user alice / wonderland in config.toml and a listener
// on 127.0.0.1:8765 for the redirect (python3 -m http.server 8765):
//   npm install playwright-core && node tests/browser/login.js
// Needs Debian's chromium (/usr/bin/chromium). Not part of `cargo test`.
const { chromium } = require('playwright-core');
const crypto = require('crypto');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  let redirected = null;
  await page.route('http://127.0.0.1:8765/**', route => { redirected = route.request().url(); route.fulfill({ body: 'back at the app' }); });
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const url = 'https://localhost:14000/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=http://127.0.0.1:8765/callback'
    + '&scope=openid%20profile&state=browser-state&code_challenge=' + challenge + '&code_challenge_method=S256';
  await page.goto(url);
  await page.screenshot({ path: '/tmp/pw/login.png' });
  await page.fill('#username', 'alice');
  await page.fill('#password', 'wonderland');
  await Promise.all([page.waitForURL('http://127.0.0.1:8765/**'), page.click('button[type=submit]')]);
  const u = new URL(redirected || page.url());
  console.log('redirected with code:', !!u.searchParams.get('code'), 'state:', u.searchParams.get('state'), 'iss:', u.searchParams.get('iss'));
  // Wrong password shows the error on the page.
  const p2 = await context.newPage();
  const ctx2 = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
  const p3 = await ctx2.newPage();
  await p3.goto(url);
  await p3.fill('#username', 'alice'); await p3.fill('#password', 'nope');
  await p3.click('button[type=submit]');
  await p3.waitForSelector('.error');
  console.log('wrong password message:', await p3.textContent('.error'));
  await p3.screenshot({ path: '/tmp/pw/error.png' });
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
