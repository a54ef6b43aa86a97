// The browser half of e2e/ui (Go starts the whole fleet, then this script):
// drives Debian's Chromium through playwright-core against a real
// `boxfleet serve`. It prints protocol lines the Go test reads:
//   SUB <url>          the new user's subscription, for Go to move traffic
//   TIME <what> <ms>   measured durations
//   OK                 everything passed
// Environment: BF_URL (controller root), BF_PASSWORD (owner "admin"),
// BF_SHOTS (directory for screenshots), BF_USER (name to create),
// BF_PREFIX_URL (the controller behind a proxy that strips a path prefix).
import { chromium } from 'playwright-core'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

const base = process.env.BF_URL.replace(/\/$/, '') + '/'
const shots = process.env.BF_SHOTS
const userName = process.env.BF_USER || 'webui-alice'
mkdirSync(shots, { recursive: true })

const say = (...a) => console.log(...a)
function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what)
}

const browser = await chromium.launch({
  executablePath: process.env.BF_CHROMIUM || '/usr/bin/chromium',
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
})
const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-US' })
const page = await ctx.newPage()
page.setDefaultTimeout(20000)
const pageErrors = []
page.on('pageerror', (e) => pageErrors.push(e.message))
// Any CSP violation means the embedded build needs something the policy forbids.
page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) pageErrors.push(m.text()) })

async function shot(name) {
  await page.waitForTimeout(400) // let the kit's transitions settle
  await page.screenshot({ path: join(shots, name + '.png'), fullPage: false })
}
async function nav(name) {
  const link = page.locator(`[data-test=nav-${name}]`).first()
  // A narrow window folds the last menu items into the kit's "···" menu:
  // go by the link's address then.
  if (await link.isVisible()) await link.click()
  else await page.goto(base + 'ui/' + (name === 'overview' ? '' : name))
  await page.waitForSelector(`[data-test=page-${name}]`)
}
async function waitFor(what, timeoutMs, f) {
  const t0 = Date.now()
  for (;;) {
    if (await f()) return Date.now() - t0
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await page.waitForTimeout(1000)
  }
}

try {
  // Login, with the language and theme pickers on the page.
  await page.goto(base)
  await page.waitForSelector('[data-test=login-name]')
  check(page.url().endsWith('/ui/login'), 'the root redirects to the UI login: ' + page.url())
  check(await page.isVisible('[data-test=lang]'), 'language picker on the login page')
  await shot('login-en')
  await page.fill('[data-test=login-name]', 'admin')
  await page.fill('[data-test=login-password]', 'wrong')
  await page.click('[data-test=login-submit]')
  await page.waitForSelector('[data-test=login-error]')
  await page.fill('[data-test=login-password]', process.env.BF_PASSWORD)
  await page.click('[data-test=login-submit]')
  await page.waitForSelector('[data-test=page-overview]')
  // The session is a cookie only: nothing credential-like in storage.
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }))
  check(!/token|session|password/i.test(stored.replace(/boxfleet\.(locale|theme)/g, '')), 'no credentials in web storage: ' + stored)

  // Create a user from the users page.
  await nav('users')
  await page.click('[data-test=user-create]')
  await page.fill('[data-test=create-name]', userName)
  await page.fill('[data-test=create-limit]', '5GiB')
  await page.click('[data-test=create-submit]')
  await page.waitForSelector('[data-test=page-user]')
  check((await page.textContent('[data-test=user-name]')) === userName, 'on the new user page')
  const subURL = (await page.textContent('[data-test=sub-url]')).trim()
  check(await page.isVisible('[data-test=qr]'), 'a QR code for the subscription')
  // Fetch it as a client would (no cookie needed: the token is the credential).
  const sub = await ctx.request.get(subURL + '?format=singbox', { headers: { Cookie: '' } })
  check(sub.ok(), `subscription answers ${sub.status()}`)
  check((await sub.text()).includes('"outbounds"'), 'the subscription is a sing-box config')
  say('SUB ' + subURL)

  // Go moves traffic through a real sing-box client now: the live rate
  // (Prometheus) and then the ledger's usage (accounting) must appear.
  const liveMs = await waitFor('a live rate on the user page', 150000, async () => {
    const t = (await page.textContent('[data-test=live-rate]').catch(() => '')) || ''
    return /[1-9]/.test(t.replace(/\/s/g, ''))
  })
  say('TIME live_rate ' + liveMs)
  const usageMs = await waitFor('usage in the ledger', 150000, async () => page.isVisible('[data-test=usage-table]'))
  say('TIME usage ' + usageMs)
  await shot('user-en')

  // Suspend: the page says why, and offers resume.
  await page.click('[data-test=user-suspend]')
  await page.waitForSelector('[data-test=why]')
  const why = await page.textContent('[data-test=why]')
  check(/admin/i.test(why), 'why names the admin suspension: ' + why)
  check(await page.isVisible('[data-test=why-resume]'), 'a resume button in the why panel')
  // The timeline has the suspension.
  await page.click('.n-tabs-tab:has-text("Timeline")')
  await page.waitForSelector('[data-test=timeline-item]:has-text("suspend")')
  await page.click('.n-tabs-tab:has-text("Usage per day")')
  await shot('user-suspended-en')

  // The users page, first page rendered in under a second.
  await nav('overview')
  let t0 = Date.now()
  await page.click('[data-test=nav-users]')
  await page.waitForSelector('[data-test=user-link]')
  const usersMs = Date.now() - t0
  say('TIME users_page ' + usersMs)
  check(usersMs < 1000, `users page rendered in ${usersMs} ms`)
  t0 = Date.now()
  await page.reload()
  await page.waitForSelector('[data-test=user-link]')
  say('TIME users_page_reload ' + (Date.now() - t0))
  // The row shows the status and its reason.
  check(/suspended/.test(await page.textContent('[data-test=users-table]')), 'the suspended user in the list')

  // Drain a node.
  await nav('nodes')
  await page.waitForSelector('[data-test=node-demo-2]')
  await page.click('[data-test=drain-demo-2]')
  await page.waitForSelector('[data-test=node-demo-2] [data-test=node-drained]')
  await page.waitForSelector('[data-test=undrain-demo-2]')
  // Add a node: the install command and the token, shown once.
  await page.click('[data-test=node-add]')
  await page.fill('[data-test=node-name]', 'webui-node')
  await page.click('[data-test=node-create]')
  await page.waitForSelector('[data-test=node-token]')
  const token = (await page.textContent('[data-test=node-token]')).trim()
  check(token.length > 10, 'a node token')
  if (await page.isVisible('[data-test=install-command]')) {
    const cmd = await page.textContent('[data-test=install-command]')
    check(cmd.includes('curl') && cmd.includes(token) && cmd.includes('webui-node'), 'install command: ' + cmd)
  }
  await shot('node-added-en')
  await page.click('[data-test=node-added-close]')
  await page.waitForSelector('[data-test=node-webui-node]')

  // Bulk action on a selection, previewed: refresh pauses while selected.
  await nav('users')
  await page.click('tr:has([data-test=user-link]:text-is("demo")) .n-checkbox')
  await page.waitForSelector('[data-test=refresh-paused]')
  await page.click('[data-test=bulk-open]')
  await page.waitForSelector('[data-test=bulk-preview]:has-text("1")')
  check(/\b1\b/.test(await page.textContent('[data-test=bulk-preview]')), 'preview counts the one selected user')
  await shot('users-bulk-en')
  await page.click('[data-test=bulk-apply]')
  await page.waitForSelector('[data-test=bulk-result]')
  check(/1 of 1/.test(await page.textContent('[data-test=bulk-result]')), 'bulk result: ' + await page.textContent('[data-test=bulk-result]'))
  await page.keyboard.press('Escape')
  await page.waitForFunction(() => !document.querySelector('[data-test=refresh-paused]'))

  // Every page, in English, then in Chinese.
  const pagesToShoot = ['overview', 'users', 'nodes', 'traffic', 'events', 'plans', 'hooks', 'admins', 'sessions']
  async function shootAll(lang) {
    for (const p of pagesToShoot) {
      await nav(p)
      await page.waitForTimeout(p === 'traffic' ? 1500 : 600)
      await shot(`${p}-${lang}`)
    }
    await page.click('[data-test=nav-users]')
    await page.click(`[data-test=user-link] >> text=${userName}`)
    await page.waitForSelector('[data-test=why]')
    await shot(`user-${lang}`)
  }
  await shootAll('en')

  async function pickLang(label) {
    await page.click('[data-test=lang]')
    await page.waitForTimeout(300) // the menu opens with a transition
    const option = page.locator(`.n-base-select-option >> text=${label}`)
    await option.click({ timeout: 5000 }).catch(() => option.click({ force: true }))
    await page.waitForFunction((l) => document.documentElement.lang === l,
      { 'English': 'en', '简体中文': 'zh-CN', 'فارسی': 'fa', 'Русский': 'ru' }[label])
    await page.waitForTimeout(300)
  }
  await pickLang('简体中文')
  check((await page.getAttribute('html', 'lang')) === 'zh-CN', 'html lang zh-CN')
  check((await page.textContent('[data-test=nav-users]')).includes('用户'), 'menu in Chinese')
  await shootAll('zh')

  // Russian: every language is walked, not only the ones with screenshots.
  await pickLang('Русский')
  check((await page.getAttribute('html', 'lang')) === 'ru', 'html lang ru')
  check((await page.getAttribute('html', 'dir')) !== 'rtl', 'Russian lays out left to right')
  check((await page.textContent('[data-test=nav-users]')).includes('Пользователи'), 'menu in Russian')
  await nav('users')
  await page.waitForSelector('[data-test=user-link]')
  await shot('users-ru')

  await pickLang('فارسی')
  check((await page.getAttribute('html', 'dir')) === 'rtl', 'Persian lays out right to left')
  await nav('users')
  // RTL for real: the menu's first item sits right of the last.
  const boxes = await page.$$eval('.n-menu-item', (els) => els.map((e) => e.getBoundingClientRect().x))
  check(boxes.length > 2 && boxes[0] > boxes[1], 'menu runs right to left: ' + boxes.join(','))
  await shot('users-fa')
  await nav('overview')
  await shot('overview-fa')

  // Dark theme.
  await page.click('[data-test=theme]')
  await page.waitForTimeout(300)
  const dark = page.locator('.n-base-select-option >> text=تیره')
  await dark.click({ timeout: 5000 }).catch(() => dark.click({ force: true }))
  await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark')
  await shot('overview-fa-dark')

  // Phone width: nothing wider than the screen, the menu in one button.
  await pickLang('English')
  await page.click('[data-test=theme]')
  await page.waitForTimeout(300)
  const system = page.locator('.n-base-select-option >> text=System')
  await system.click({ timeout: 5000 }).catch(() => system.click({ force: true }))
  await page.waitForFunction(() => document.documentElement.dataset.theme === 'light')
  await page.setViewportSize({ width: 400, height: 820 })
  await page.goto(base + 'ui/users')
  await page.waitForSelector('[data-test=user-link]')
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth)
  check(overflow <= 400, `page ${overflow} px wide at a 400 px viewport`)
  check(await page.isVisible('[data-test=nav-mobile]'), 'the phone menu button')
  await shot('users-phone')
  await page.click(`[data-test=user-link] >> text=${userName}`)
  await page.waitForSelector('[data-test=why]')
  check(await page.evaluate(() => document.documentElement.scrollWidth) <= 400, 'user page fits 400 px')
  await shot('user-phone')

  // Sign out; the login page in Chinese.
  await page.setViewportSize({ width: 1280, height: 860 })
  await page.click('[data-test=logout]')
  await page.waitForSelector('[data-test=login-name]')
  await pickLang('简体中文')
  await shot('login-zh')

  // Behind a reverse proxy that strips a path prefix (Go runs one at
  // BF_PREFIX_URL): the redirect, the assets, the API calls and the
  // client-side routes all stay under the prefix.
  if (process.env.BF_PREFIX_URL) {
    const prefixed = process.env.BF_PREFIX_URL.replace(/\/$/, '') + '/'
    const prefixPath = new URL(prefixed).pathname
    await page.goto(prefixed)
    await page.waitForSelector('[data-test=login-name]')
    check(new URL(page.url()).pathname === prefixPath + 'ui/login', 'login under the prefix: ' + page.url())
    await page.fill('[data-test=login-name]', 'admin')
    await page.fill('[data-test=login-password]', process.env.BF_PASSWORD)
    await page.click('[data-test=login-submit]')
    await page.waitForSelector('[data-test=page-overview]')
    await nav('users')
    await page.waitForSelector('[data-test=user-link]')
    check(new URL(page.url()).pathname === prefixPath + 'ui/users', 'users page under the prefix: ' + page.url())
    await page.click(`[data-test=user-link] >> text=${userName}`)
    await page.waitForSelector('[data-test=why]')
    // A deep link loaded afresh finds its assets through the relative <base>.
    await page.reload()
    await page.waitForSelector('[data-test=why]')
    check(new URL(page.url()).pathname === prefixPath + 'ui/users/' + userName, 'deep link under the prefix')
    say('PREFIX ok')
    await page.click('[data-test=logout]')
    await page.waitForSelector('[data-test=login-name]')
  }

  // Lockout: failed logins until the limiter answers 429; the page says
  // when to try again. Last, since it locks this address out.
  for (let i = 0; i < 12 && !(await page.isVisible('[data-test=login-locked]')); i++) {
    await page.fill('[data-test=login-name]', 'nobody')
    await page.fill('[data-test=login-password]', 'wrong' + i)
    await page.click('[data-test=login-submit]')
    await page.waitForSelector('[data-test=login-error], [data-test=login-locked]')
  }
  const locked = await page.textContent('[data-test=login-locked]')
  check(/Try again after/.test(locked) && /\d/.test(locked), 'lockout message with the retry time: ' + locked)
  await shot('login-locked-en')

  check(pageErrors.length === 0, 'no page errors: ' + pageErrors.join(' | '))
  say('OK')
} catch (e) {
  await page.screenshot({ path: join(shots, 'failure.png') }).catch(() => {})
  console.error(e.stack || String(e))
  console.error('page errors: ' + pageErrors.join(' | '))
  process.exitCode = 1
} finally {
  await browser.close()
}
