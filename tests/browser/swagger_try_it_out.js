// Opens the Swagger UI of /openapi/api_authentication/ in headless Chromium,
// uses "Try it out" on createRefreshToken and prints the live response's
// status and body. Usage: node swagger_try_it_out.js BASE_URL USER PASSWORD
const { launch } = require('./chromium');

(async () => {
  const [base, username, password] = process.argv.slice(2);
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1600 } });
    await page.goto(base + '/openapi/api_authentication/ui/');
    const op = '#operations-Token_Authentication-create_refresh_token';
    await page.waitForSelector(op, { timeout: 20000 });
    await page.click(op + ' .opblock-summary');
    await page.click(op + ' button.try-out__btn');
    await page.locator(op + ' textarea.body-param__text').fill(JSON.stringify({ username, password, name: 'from-swagger' }));
    await page.locator(op + ' button.execute').click();
    const status = page.locator(op + ' .live-responses-table tbody .response-col_status');
    await status.first().waitFor({ timeout: 20000 });
    const text = await page.locator(op + ' .live-responses-table .highlight-code').first().innerText();
    const body = text.slice(text.indexOf('{')); // past the "Download" button's label
    console.log(JSON.stringify({ status: (await status.first().innerText()).trim(), body }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
