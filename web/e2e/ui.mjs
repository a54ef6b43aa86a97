// The browser half of e2e/ui (Go starts the whole fleet, then this script):
// drives Debian's Chromium through playwright-core against a real
// `boxfleet serve`. It prints protocol lines the Go test reads:
//   SUB <url>          the new user's subscription, for Go to move traffic
//   TIME <what> <ms>   measured durations
//   OK                 everything passed
// Environment: BF_URL (controller root), BF_PASSWORD (owner "admin"),
// BF_SHOTS (directory for screenshots), BF_USER (name to create),
// BF_PREFIX_URL (the controller behind a proxy that strips a path prefix),
// BF_HOOK_URL (a receiver for an outgoing hook the script creates).
import { chromium } from 'playwright-core'
import { createHmac } from 'node:crypto'
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

// RFC 6238 TOTP as an authenticator app computes it (HMAC-SHA1, 30 s
// steps, 6 digits), so that the test signs in the way a person does and
// the server's check is not bypassed.
function base32(s) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0, v = 0
  const out = []
  for (const c of s.replace(/[\s=]/g, '').toUpperCase()) {
    const i = abc.indexOf(c)
    if (i < 0) throw new Error('not base32: ' + s)
    v = ((v << 5) | i) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((v >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}
const totpStep = (ms = Date.now()) => Math.floor(ms / 30000)
function totp(secret, step = totpStep()) {
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(step))
  const h = createHmac('sha1', base32(secret)).update(msg).digest()
  const o = h[h.length - 1] & 15
  const n = (((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]) % 1000000
  return String(n).padStart(6, '0')
}
// RFC 6238 appendix B, SHA-1, T = 59 s (its 8 digits 94287082, cut to 6).
check(totp('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', totpStep(59000)) === '287082', 'the test\'s own TOTP matches RFC 6238')

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

  // Set up what the later steps use, through the API as a script would: an
  // outgoing hook (its deliveries show on the alerts page) and a second
  // owner account (it enrols TOTP on its account page).
  const apiCall = (method, path, body) => page.evaluate(async ([m, p, b]) => {
    const r = await fetch('../' + p, { method: m, headers: { 'Content-Type': 'application/json' }, body: b ? JSON.stringify(b) : undefined })
    return r.status + ' ' + await r.text()
  }, [method, path, body])
  if (process.env.BF_HOOK_URL) {
    const r = await apiCall('PUT', 'api/v1/hooks/webui-hook', { url: process.env.BF_HOOK_URL, secret: 'webui-hook-secret-0123456789', events: ['user.*', 'node.*'] })
    check(r.startsWith('200') || r.startsWith('201'), 'hook created: ' + r)
  }
  const totpUser = 'webui-totp'
  const totpPass = 'first-Password-4711'
  const totpPass2 = 'second-Password-0815'
  const created = await apiCall('POST', 'api/v1/admins', { name: totpUser, role: 'owner', password: totpPass })
  check(created.startsWith('201') || created.startsWith('200'), 'second owner created: ' + created)

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
  // The page the end user opens from that link, in a browser of its own
  // (no admin cookie): its language follows Accept-Language, ?lang=
  // overrides it, and Persian turns the page right to left.
  for (const [locale, query, lang, dir, shotName] of [
    ['en-US', '', 'en', 'ltr', 'subscription-page'],
    ['zh-CN', '', 'zh-CN', 'ltr', 'subscription-page-zh'],
    ['zh-CN', '?lang=fa', 'fa', 'rtl', 'subscription-page-fa'],
  ]) {
    const endUser = await browser.newContext({ viewport: { width: 390, height: 844 }, locale })
    try {
      const p = await endUser.newPage()
      const r = await p.goto(subURL + query)
      check(r.ok(), `subscription page (${locale}${query}) answers ${r.status()}`)
      const html = p.locator('html')
      check((await html.getAttribute('lang')) === lang, `subscription page language ${lang} for ${locale}${query}: ` + await html.getAttribute('lang'))
      check((await html.getAttribute('dir')) === dir, `subscription page direction ${dir} for ${lang}`)
      check(await p.isVisible('nav.lang a[aria-current]'), 'the subscription page has a language picker')
      await p.waitForTimeout(300)
      await p.screenshot({ path: join(shots, shotName + '.png'), fullPage: false })
    } finally {
      await endUser.close()
    }
  }

  // Go moves traffic through a real sing-box client now: the live rate
  // (Prometheus) and then the ledger's usage (accounting) must appear.
  const liveMs = await waitFor('a live rate on the user page', 150000, async () => {
    const t = (await page.textContent('[data-test=live-rate]').catch(() => '')) || ''
    return /[1-9]/.test(t.replace(/\/s/g, ''))
  })
  say('TIME live_rate ' + liveMs)
  const usageMs = await waitFor('usage in the ledger', 150000, async () => page.isVisible('[data-test=usage-chart] canvas'))
  say('TIME usage ' + usageMs)
  // The chart has a table beside it (for screen readers, for copying
  // numbers): the same days and nodes.
  await page.click('[data-test=usage-as-table]')
  await page.waitForSelector('[data-test=usage-table]')
  check(/demo-1|demo-2/.test(await page.textContent('[data-test=usage-table]')), 'the usage table names the node')
  check(!(await page.isVisible('[data-test=usage-chart]')), 'the table replaces the chart')
  await page.click('[data-test=usage-as-chart]')
  await page.waitForSelector('[data-test=usage-chart] canvas')
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

  // Drain a node. The controller's drain guard keeps at least one healthy
  // undrained node per group (--nodes.drain-min-healthy 1): once the health
  // query scores both nodes, draining demo-2 passes it and draining demo-1,
  // the last one, is refused with the reason on its card until forced.
  await nav('nodes')
  await page.waitForSelector('[data-test=node-demo-2]')
  await waitFor('both nodes scored healthy', 90000, async () => {
    const scores = await page.$$eval('[data-test^=health-demo-]', (els) => els.map((e) => Number(e.dataset.score || 0)))
    return scores.length === 2 && scores.every((x) => x > 0)
  })
  await page.click('[data-test=drain-demo-2]')
  await page.waitForSelector('[data-test=node-demo-2] [data-test=node-drained]')
  await page.waitForSelector('[data-test=undrain-demo-2]')
  check(!(await page.isVisible('[data-test=node-demo-2] [data-test=drain-refused]')), 'draining demo-2 passes the guard')
  await page.click('[data-test=drain-demo-1]')
  await page.waitForSelector('[data-test=node-demo-1] [data-test=drain-refused]')
  const refusal = await page.textContent('[data-test=node-demo-1] [data-test=drain-refused]')
  check(/guard/i.test(refusal) && /demo-1/.test(refusal) && /healthy/.test(refusal), 'the guard\'s reason on the card: ' + refusal)
  check(!(await page.isVisible('[data-test=node-demo-1] [data-test=node-drained]')), 'the refused drain left demo-1 serving')
  await page.locator('[data-test=node-demo-1]').scrollIntoViewIfNeeded()
  await shot('node-drain-refused-en')
  await page.click('[data-test=force-drain-demo-1]')
  await page.click('.n-popconfirm__action .n-button--primary-type')
  await page.waitForSelector('[data-test=node-demo-1] [data-test=node-drained]')
  check(!(await page.isVisible('[data-test=node-demo-1] [data-test=drain-refused]')), 'the forced drain clears the refusal')
  // The override is in the audit log; demo-1 serves again.
  const forced = await apiCall('GET', 'api/v1/events?action=node.drain_forced&limit=5')
  check(forced.includes('demo-1'), 'node.drain_forced audited: ' + forced)
  await page.click('[data-test=undrain-demo-1]')
  await page.waitForSelector('[data-test=drain-demo-1]')
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

  // The column chooser and a saved view (filter, sort, columns), kept per
  // admin in this browser across reloads.
  const rateShown = () => page.evaluate(() => [...document.querySelectorAll('[data-test=users-table] thead th')].some((th) => th.textContent.trim() === 'Rate'))
  check(await rateShown(), 'the rate column shows by default')
  await page.click('[data-test=columns]')
  await page.click('[data-test=column-rate]')
  await waitFor('the rate column hidden', 5000, async () => !(await rateShown()))
  await page.click('[data-test=columns]')
  await page.fill('[data-test=user-search]', userName)
  await page.waitForFunction((u) => location.search.includes('search=' + u), userName)
  await page.click('[data-test=view-save]')
  await page.fill('[data-test=view-name]', 'mine')
  await page.click('[data-test=view-store]')
  await page.click('[data-test=columns]')
  await page.click('[data-test=column-rate]')
  await waitFor('the rate column back', 5000, rateShown)
  await page.click('[data-test=columns]')
  await page.goto(base + 'ui/users')
  await page.waitForSelector('[data-test=user-link]')
  check(await rateShown(), 'the column choice survives a reload')
  await page.click('[data-test=views]')
  await page.waitForTimeout(300)
  const mine = page.locator('.n-base-select-option >> text=mine')
  await mine.click({ timeout: 5000 }).catch(() => mine.click({ force: true }))
  await page.waitForFunction((u) => location.search.includes('search=' + u), userName)
  await waitFor('the view\'s columns', 5000, async () => !(await rateShown()))
  const listed = await page.$$eval('[data-test=user-link]', (els) => els.map((e) => e.textContent))
  check(listed.length === 1 && listed[0] === userName, 'the view filters the list: ' + listed.join(','))
  await page.click('[data-test=columns]')
  await page.click('[data-test=column-rate]')
  await waitFor('the rate column back', 5000, rateShown)
  await page.click('[data-test=columns]')

  // Every page, in English, then in Chinese.
  // The hook's deliveries (the user's creation and suspension, the drain)
  // on the alerts page, delivered to the Go test's receiver.
  if (process.env.BF_HOOK_URL) {
    await nav('events')
    await waitFor('a delivered hook delivery on the alerts page', 60000, async () => {
      const text = (await page.textContent('[data-test=hook-deliveries]').catch(() => '')) || ''
      return text.includes('webui-hook') && /delivered/.test(text)
    })
    check(await page.isVisible('[data-test=hook-deliveries] [data-test=to-hooks]'), 'a link from the deliveries to the hooks page')
  }

  const pagesToShoot = ['overview', 'users', 'nodes', 'traffic', 'events', 'plans', 'hooks', 'admins', 'sessions', 'account']
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

  // The second owner's own account page: change the password, enrol TOTP
  // (the QR code and the secret, a wrong code refused, the recovery codes
  // once), then sign in with a code this script computes, and turn TOTP off.
  await page.goto(base + 'ui/login')
  await page.waitForSelector('[data-test=login-name]')
  if ((await page.getAttribute('html', 'lang')) !== 'en') await pickLang('English')
  async function login(name, password, code) {
    await page.fill('[data-test=login-name]', name)
    await page.fill('[data-test=login-password]', password)
    await page.fill('[data-test=login-totp]', code ?? '')
    await page.click('[data-test=login-submit]')
  }
  await login(totpUser, totpPass)
  await page.waitForSelector('[data-test=page-overview]')
  await page.click('[data-test=nav-account]')
  await page.waitForSelector('[data-test=page-account]')
  check((await page.textContent('[data-test=account-name]')).trim() === totpUser, 'the account page is the signed-in account')
  await page.waitForSelector('[data-test=totp-state]:has-text("off")')
  await page.fill('[data-test=pw-current]', totpPass)
  await page.fill('[data-test=pw-new]', totpPass2)
  await page.fill('[data-test=pw-repeat]', totpPass2)
  await page.click('[data-test=pw-submit]')
  await page.waitForSelector('[data-test=login-name]') // the change ended the session
  await login(totpUser, totpPass2)
  await page.waitForSelector('[data-test=page-overview]')
  await page.click('[data-test=nav-account]')
  await page.click('[data-test=totp-begin]')
  await page.waitForSelector('[data-test=totp-secret]')
  check(await page.isVisible('[data-test=totp-card] [data-test=qr]'), 'a QR code of the otpauth URI')
  const secret = (await page.textContent('[data-test=totp-secret]')).replace(/\s+/g, '')
  check(/^[A-Z2-7]{16,}$/.test(secret), 'a base32 secret: ' + secret)
  await shot('account-totp-en')
  await page.fill('[data-test=totp-code]', totp(secret, totpStep() - 10)) // five minutes old
  await page.click('[data-test=totp-confirm]')
  await page.waitForSelector('[data-test=totp-error]')
  await page.fill('[data-test=totp-code]', totp(secret))
  await page.click('[data-test=totp-confirm]')
  await page.waitForSelector('[data-test=recovery-codes]')
  const confirmedStep = totpStep()
  const codes = await page.$$eval('[data-test=recovery-codes] li', (els) => els.map((e) => e.textContent.trim()))
  check(codes.length === 10 && codes.every((c) => /^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$/.test(c)), 'ten recovery codes: ' + codes.join(' '))
  await page.click('[data-test=totp-relogin]')
  await page.waitForSelector('[data-test=login-name]')
  // The password alone no longer signs in.
  await login(totpUser, totpPass2)
  await page.waitForSelector('[data-test=login-error]')
  // A code works once, so sign in with the next step's code, when it is the
  // current one: what a person typing the app's next code does.
  await waitFor('the next TOTP step', 35000, async () => totpStep() > confirmedStep)
  await login(totpUser, totpPass2, totp(secret))
  await page.waitForSelector('[data-test=page-overview]')
  const me = await apiCall('GET', 'api/v1/session')
  check(me.startsWith('200') && me.includes(`"name": "${totpUser}"`), 'signed in as the TOTP account: ' + me)
  await page.click('[data-test=nav-account]')
  await page.waitForSelector('[data-test=totp-state]:has-text("on")')
  await page.click('[data-test=totp-disable]')
  await page.click('.n-popconfirm__action .n-button--primary-type')
  await page.waitForSelector('[data-test=login-name]')
  await login(totpUser, totpPass2)
  await page.waitForSelector('[data-test=page-overview]')
  say('TOTP ok')
  await page.click('[data-test=logout]')
  await page.waitForSelector('[data-test=login-name]')

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
