// Single sign-on as a person does it, in headless Chromium: at keyward's
// sign-in page, "Sign in with <provider>", sign in at the provider (the npm
// oidc-provider's own pages), land on the account page, and create a
// refresh token there. Screenshots go to SHOTS_DIR with prefix NAME; what
// the browser saw is printed as JSON.
// Usage: node sso_sign_in.js BASE_URL PROVIDER_LOGIN SHOTS_DIR NAME [START_PATH]
const { launch } = require('./chromium');

(async () => {
  const [base, login, shots, name, start] = process.argv.slice(2);
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    const page = await context.newPage();
    // keyward's own answers that failed (the provider's pages are not ours).
    const errors = [];
    page.on('response', (r) => { if (r.url().startsWith(base) && r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
    await page.goto(`${base}${start || '/account/auth'}`);
    await page.screenshot({ path: `${shots}/${name}-sign-in.png`, fullPage: true });
    const button = page.getByRole('link', { name: /^Sign in with / });
    const buttonText = (await button.first().innerText()).trim();
    await Promise.all([page.waitForNavigation(), button.first().click()]);
    // The provider's login page (oidc-provider's development pages).
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'anything');
    await page.screenshot({ path: `${shots}/${name}-provider.png`, fullPage: true });
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    // A consent step, if the provider shows one.
    for (let i = 0; i < 3 && !page.url().startsWith(base); i++) {
      const go = page.locator('button[type=submit]');
      if (await go.count() === 0) break;
      await Promise.all([page.waitForNavigation(), go.first().click()]);
    }
    await page.waitForLoadState('load');
    const landed = page.url();
    const status = await page.innerText('body');
    await page.screenshot({ path: `${shots}/${name}-signed-in.png`, fullPage: true });
    let refresh = null;
    if (await page.locator('#name').count() > 0) {
      await page.fill('#name', 'sso-laptop');
      await Promise.all([page.waitForNavigation(), page.click('button[value=create_refresh_token]')]);
      refresh = await page.inputValue('#new-secret');
      await page.screenshot({ path: `${shots}/${name}-refresh-token.png`, fullPage: true });
    }
    const cookies = (await context.cookies(base)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite }));
    console.log(JSON.stringify({ buttonText, landed, status, refresh, cookies, errors }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
