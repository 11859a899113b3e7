// axe-core's WCAG 2 A/AA rules on every page a person meets (sign-in,
// Account Settings, password change, each console page), in headless
// Chromium. Prints the violations per page as JSON.
// Usage: node accessibility.js BASE_URL USERNAME PASSWORD
const fs = require('fs');
const { launch } = require('./chromium');

const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const SIGNED_IN = ['/account/auth', '/account/password', '/admin/', '/admin/users/', '/admin/oauth_clients/',
  '/admin/sso/', '/admin/connectors/', '/admin/data_products/', '/admin/settings/', '/admin/keys/', '/admin/audit/'];

async function audit(page) {
  // axe is evaluated by the test driver, past the pages' CSP (which allows
  // keyward's own scripts only).
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] }));
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
}

(async () => {
  const [base, username, password] = process.argv.slice(2);
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    const found = {};
    await page.goto(`${base}/account/auth`);
    found['/ (sign-in)'] = await audit(page);
    await page.fill('#username', username);
    await page.fill('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    for (const path of SIGNED_IN) {
      await page.goto(`${base}${path}`);
      found[path] = await audit(page);
    }
    // The check itself must be able to fail: an unlabelled field is a violation.
    await page.evaluate(() => document.body.insertAdjacentHTML('beforeend', '<input type="text" id="unlabelled">'));
    const selfCheck = await audit(page);
    console.log(JSON.stringify({ found, selfCheck }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
