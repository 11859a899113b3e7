// What lower roles and hostile pages can do to the admin console, in
// headless Chromium: each USER:PASSWORD given signs in and visits every
// console page (their statuses are reported); an admin's browser then
// visits each hostile page (another origin) that posts a console form, and
// what keyward answered each is reported. Prints what it saw as JSON.
// Usage: node console_attacks.js BASE_URL ADMIN_PASSWORD HOSTILE_URL[,…] SHOTS_DIR USER:PASSWORD…
const { launch } = require('./chromium');

const PAGES = ['', 'users/', 'oauth_clients/', 'sso/', 'connectors/', 'data_products/', 'settings/', 'keys/', 'audit/'];

async function signIn(context, base, username, password) {
  const page = await context.newPage();
  await page.goto(`${base}/account/auth`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  return page;
}

(async () => {
  const [base, adminPassword, hostile, shots, ...users] = process.argv.slice(2);
  const browser = await launch();
  try {
    const usersSaw = {};
    for (const user of users) {
      const [name, password] = user.split(':');
      const page = await signIn(await browser.newContext(), base, name, password);
      usersSaw[name] = {};
      for (const slug of PAGES) {
        const r = await page.goto(`${base}/admin/${slug}`);
        usersSaw[name][slug || 'overview'] = { status: r.status(), text: (await page.innerText('body')).slice(0, 200) };
      }
      await page.goto(`${base}/admin/users/`);
      await page.screenshot({ path: `${shots}/console-${name}-refused.png`, fullPage: true });
    }
    const adminPage = await signIn(await browser.newContext(), base, 'admin', adminPassword);
    const hostileResults = [];
    for (const url of hostile.split(',')) {
      const submitted = adminPage.waitForResponse((r) => r.url().startsWith(`${base}/`) && r.request().method() === 'POST');
      await adminPage.goto(url);
      const response = await submitted;
      await adminPage.waitForLoadState('load');
      hostileResults.push({ url, status: response.status(), text: (await adminPage.innerText('body')).slice(0, 300) });
    }
    console.log(JSON.stringify({ usersSaw, hostileResults }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
