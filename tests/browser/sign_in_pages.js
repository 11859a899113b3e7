// Walks keyward's pages as a person in headless Chromium: opens URL, signs in
// on keyward's sign-in page, and reports the page that follows (its visible
// text and final URL), with screenshots of both pages in SHOTS_DIR.
// With CLICK (a selector), it then clicks that button on the page that
// followed and reports where the browser went ("confirmed", a screenshot
// too).
// Usage: node sign_in_pages.js URL USER PASSWORD SHOTS_DIR NAME [CLICK]
const { launch } = require('./chromium');

(async () => {
  const [url, username, password, shots, name, click] = process.argv.slice(2);
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
    // Where the browser was sent (another origin, a provider, is not
    // reachable from here: that its request was made is what counts).
    const visited = [];
    page.on('request', (r) => { if (r.isNavigationRequest()) visited.push(r.url()); });
    await page.goto(url);
    const signIn = await page.innerText('body');
    await page.screenshot({ path: `${shots}/${name}-sign-in.png`, fullPage: true });
    await page.fill('#username', username);
    await page.fill('#password', password);
    // The next page may be on another origin (a provider): keep what we see.
    const [response] = await Promise.all([
      page.waitForNavigation({ timeout: 20000 }).catch(() => null),
      page.click('button[type=submit]'),
    ]);
    let after = '';
    try {
      after = await page.innerText('body');
      await page.screenshot({ path: `${shots}/${name}-after.png`, fullPage: true });
    } catch (e) { after = String(e); }
    let confirmed = null;
    if (click) {
      const [next] = await Promise.all([
        page.waitForNavigation({ timeout: 20000 }).catch(() => null),
        page.click(click),
      ]);
      confirmed = next ? next.status() : null;
      await page.screenshot({ path: `${shots}/${name}-confirmed.png`, fullPage: true }).catch(() => null);
    }
    console.log(JSON.stringify({ signIn, after, visited, confirmed, status: response ? response.status() : null }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
