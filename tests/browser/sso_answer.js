// One single sign-on attempt in headless Chromium against a provider that
// answers at once (no login page): the browser follows keyward's "Sign in
// with" button, the provider's redirect and keyward's callback, and reports
// where it ended, what the page said and which cookies it holds.
// Usage: node sso_answer.js BASE_URL SHOT_PATH
const { launch } = require('./chromium');

(async () => {
  const [base, shot] = process.argv.slice(2);
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${base}/account/auth`);
    await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: /^Sign in with / }).first().click()]);
    await page.waitForLoadState('load');
    const landed = page.url();
    const text = await page.innerText('body');
    await page.screenshot({ path: shot, fullPage: true });
    const cookies = (await page.context().cookies(base)).map((c) => c.name);
    console.log(JSON.stringify({ landed, text, cookies }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
