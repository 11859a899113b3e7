// What a viewer and a hostile page can do to the admin console, in
// headless Chromium: a viewer signed in meets a 403 page on every console
// page; an admin's browser that visits a hostile page (another origin)
// which posts a console form gets the form refused. Prints what it saw as JSON.
// Usage: node console_attacks.js BASE_URL VIEWER PASSWORD ADMIN_PASSWORD HOSTILE_URL[,HOSTILE_URL…] SHOTS_DIR
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
  const [base, viewer, viewerPassword, adminPassword, hostile, shots] = process.argv.slice(2);
  const browser = await launch();
  try {
    const viewerPage = await signIn(await browser.newContext(), base, viewer, viewerPassword);
    const viewerSaw = {};
    for (const slug of PAGES) {
      const r = await viewerPage.goto(`${base}/admin/${slug}`);
      viewerSaw[slug || 'overview'] = { status: r.status(), text: (await viewerPage.innerText('body')).slice(0, 200) };
    }
    await viewerPage.screenshot({ path: `${shots}/console-viewer-refused.png`, fullPage: true });
    const adminPage = await signIn(await browser.newContext(), base, 'admin', adminPassword);
    const hostileResults = [];
    for (const url of hostile.split(',')) {
      const submitted = adminPage.waitForResponse((r) => r.url() === `${base}/admin/users/` && r.request().method() === 'POST');
      await adminPage.goto(url);
      const response = await submitted;
      await adminPage.waitForLoadState('load');
      hostileResults.push({ url, status: response.status(), text: (await adminPage.innerText('body')).slice(0, 300) });
    }
    console.log(JSON.stringify({ viewerSaw, hostileResults }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
