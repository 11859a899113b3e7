// The account page as a person uses it, in headless Chromium: sign in at
// /account/auth, create a refresh token (its copy button must work), make
// an API access token from it, and revoke it. Screenshots of each step go
// to SHOTS_DIR; the tokens it was shown are printed as JSON.
// Usage: node account_page.js BASE_URL USER PASSWORD SHOTS_DIR
const { launch } = require('./chromium');

(async () => {
  const [base, username, password, shots] = process.argv.slice(2);
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await context.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(`${base}/account/auth`);
    await page.screenshot({ path: `${shots}/account-sign-in.png`, fullPage: true });
    await page.fill('#username', username);
    await page.fill('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    await page.fill('#name', 'laptop-script');
    await Promise.all([page.waitForNavigation(), page.click('button[value=create_refresh_token]')]);
    const refresh = await page.inputValue('#new-secret');
    const copy = page.locator('button[data-copy]');
    const copyVisible = await copy.isVisible();
    await copy.click();
    // The label changes when the clipboard has taken the text.
    await page.waitForFunction(() => document.querySelector('button[data-copy]').textContent === 'Copied',
                               null, { timeout: 5000 }).catch(() => null);
    const copied = (await copy.innerText()).trim();
    const clipboard = await page.evaluate(() => navigator.clipboard.readText()).catch(() => '');
    await page.screenshot({ path: `${shots}/account-refresh-token-created.png`, fullPage: true });
    await Promise.all([page.waitForNavigation(), page.click('button[value=create_api_access_token]')]);
    const access = await page.inputValue('#new-secret');
    await page.screenshot({ path: `${shots}/account-api-access-token-created.png`, fullPage: true });
    await Promise.all([page.waitForNavigation(), page.click('button[value=revoke_refresh_token]')]);
    const afterRevoke = await page.innerText('body');
    await page.screenshot({ path: `${shots}/account-refresh-token-revoked.png`, fullPage: true });
    console.log(JSON.stringify({ refresh, access, copyVisible, copied, clipboard, afterRevoke, errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
