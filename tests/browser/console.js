// The admin console as a newcomer meets it, in headless Chromium: `/`
// asks to sign in; the first admin's printed password must be replaced;
// the console's pages; an M2M application created from "OAuth Client
// Applications" with its secret shown once (copy button). Screenshots of
// every page go to SHOTS_DIR; what the browser saw is printed as JSON.
// Usage: node console.js BASE_URL ADMIN_PASSWORD NEW_PASSWORD SHOTS_DIR
const { launch } = require('./chromium');

const PAGES = ['users', 'oauth_clients', 'sso', 'connectors', 'data_products', 'settings', 'keys', 'audit'];

(async () => {
  const [base, password, newPassword, shots] = process.argv.slice(2);
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await context.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/`);
    await page.screenshot({ path: `${shots}/console-sign-in.png`, fullPage: true });
    await page.fill('#username', 'admin');
    await page.fill('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    const askedForPassword = page.url();
    await page.screenshot({ path: `${shots}/console-first-password.png`, fullPage: true });
    await page.fill('#current', password);
    await page.fill('#new', newPassword);
    await page.fill('#confirm', newPassword);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    const landed = page.url();
    const nav = await page.locator('nav[aria-label="Admin Settings"] a').allInnerTexts();
    await page.screenshot({ path: `${shots}/console-overview.png`, fullPage: true });
    const titles = {};
    for (const slug of PAGES) {
      const r = await page.goto(`${base}/admin/${slug}/`);
      titles[slug] = { status: r.status(), h1: await page.innerText('h1') };
      await page.screenshot({ path: `${shots}/console-${slug}.png`, fullPage: true });
    }
    // Admin Settings > Authentication > OAuth Client Applications: a new M2M app.
    await page.goto(`${base}/admin/oauth_clients/`);
    await page.fill('#m2m_create-name', 'nightly-export');
    await page.fill('#m2m_create-access_token_duration', '30');
    await page.selectOption('#m2m_create-role', 'catalog_admin');
    await Promise.all([page.waitForNavigation(), page.click('button[value=m2m_create]')]);
    const secret = await page.inputValue('#new-secret');
    const warning = await page.innerText('section.shown .warning');
    const copy = page.locator('button[data-copy]');
    await copy.click();
    await page.waitForFunction(() => document.querySelector('button[data-copy]').textContent === 'Copied',
                               null, { timeout: 5000 }).catch(() => null);
    const clipboard = await page.evaluate(() => navigator.clipboard.readText()).catch(() => '');
    await page.screenshot({ path: `${shots}/console-m2m-created.png`, fullPage: true });
    const row = await page.locator('tr', { hasText: 'nightly-export' }).innerText();
    // Reloading shows it no more.
    await page.goto(`${base}/admin/oauth_clients/`);
    const shownAgain = await page.locator('#new-secret').count();
    console.log(JSON.stringify({ askedForPassword, landed, nav, titles, secret, warning, clipboard, row, shownAgain, errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
